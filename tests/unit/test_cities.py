from refresh_assets.lib.cities import (
    city_folder_problem,
    city_key,
    city_keys_with_data,
    closest_city,
    known_cities,
)


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


def test_a_folder_is_a_city_folder_only_under_a_known_key():
    assert city_folder_problem("vallejo") is None
    assert city_folder_problem("Vallejo") == ("folder 'Vallejo' is not a city key (lower case "
                                              "ascii with hyphens): move its files to vallejo/")
    assert city_folder_problem("San Jose") == ("folder 'San Jose' is not a city key (lower case "
                                               "ascii with hyphens): move its files to san-jose/")
    assert city_folder_problem("qqqqqqq") == (
        "folder 'qqqqqqq' is not a known city key: move its files to the folder of their city, "
        "<city-key>/ (the city's name in lower case with hyphens: san-luis-obispo/)")


def test_city_keys_with_data_skip_folders_that_are_not_city_keys(tmp_path):
    data_set = tmp_path / "fiscal_inputs.csv"
    data_set.write_text("city\nBenicia\n")
    entries = tmp_path / "entries"
    for folder in ("vallejo", "atlantis", "San Jose", "Vallejo"):
        (entries / folder).mkdir(parents=True)
    assert city_keys_with_data(entries, data_set) == ["benicia", "vallejo"]
