from refresh_assets.lib.cities import city_key, closest_city, known_cities


def test_city_keys_are_ascii_slugs():
    assert city_key("San Luis Obispo") == "san-luis-obispo"
    assert city_key("La Cañada Flintridge") == "la-canada-flintridge"
    assert city_key("St. Helena") == "st-helena"


def test_the_city_list_is_the_data_sets():
    cities = known_cities()
    assert len(cities) == 477
    assert cities["vallejo"] == "Vallejo"


def test_a_near_miss_gets_a_suggestion_and_nonsense_none():
    assert closest_city("Valejo") == "Vallejo"
    assert closest_city("Qqqqqqq") is None
