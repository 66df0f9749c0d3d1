-- Every sign that a city's filing for a year exists: figures validated from it, the
-- document found on a source's page (published, even if not entered yet), or a CalPERS
-- valuation an operator entered. One row per city, document type, year and sign.
select
    city_key,
    'acfr' as document_type,
    fiscal_year,
    'validated_figures' as received_as
from {{ ref('stg_analytics__validated_fiscal_data') }}
group by city_key, fiscal_year

union all

select
    city_key,
    document_type,
    fiscal_year,
    'document_found' as received_as
from {{ ref('stg_ops__source_documents') }}
group by city_key, document_type, fiscal_year

union all

select
    city_key,
    'calpers_valuation' as document_type,
    valuation_year as fiscal_year,
    'valuation_entered' as received_as
from {{ ref('stg_raw__calpers_valuation_entries') }}
group by city_key, valuation_year
