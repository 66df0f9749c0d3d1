{#- The base scenario lies inside the band its pessimistic and optimistic scenarios draw
    around a measure (`<measure>_low` to `<measure>_high`), in every year: scenarios that
    cross each other make a band no reader can use. A relative tolerance absorbs floating
    point rounding. -#}
{% test base_within_band(model, measure) %}
select *
from {{ model }}
where
    scenario = 'base'
    and (
        {{ measure }} < {{ measure }}_low - 1e-9 * abs({{ measure }})
        or {{ measure }} > {{ measure }}_high + 1e-9 * abs({{ measure }})
    )
{% endtest %}
