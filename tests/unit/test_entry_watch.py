import os

from refresh_assets.lib.entry_watch import scan_entries


def test_new_changed_touched_and_deleted_files(tmp_path):
    (tmp_path / "vallejo").mkdir()
    (tmp_path / "benicia").mkdir()
    (tmp_path / "vallejo" / "2019.yaml").write_text("a: 1\n")
    (tmp_path / "benicia" / "2019.yaml").write_text("a: 1\n")

    first = scan_entries(tmp_path, None)
    assert first.changed_by_city == {"benicia": ["benicia/2019.yaml"],
                                     "vallejo": ["vallejo/2019.yaml"]}

    assert scan_entries(tmp_path, first.cursor).changed_by_city == {}

    # Touched with the same content: not a new version.
    path = tmp_path / "vallejo" / "2019.yaml"
    os.utime(path, ns=(1, 1))
    touched = scan_entries(tmp_path, first.cursor)
    assert touched.changed_by_city == {}

    path.write_text("a: 2\n")
    edited = scan_entries(tmp_path, touched.cursor)
    assert edited.changed_by_city == {"vallejo": ["vallejo/2019.yaml"]}
    assert edited.fingerprint("vallejo") != first.fingerprint("vallejo")

    # The same change seen again (a tick whose cursor was lost): the same run.
    assert scan_entries(tmp_path, touched.cursor).fingerprint("vallejo") == edited.fingerprint("vallejo")

    # Saved back to the first content: a new save, hence a new run, though the content was
    # seen before.
    path.write_text("a: 1\n")
    os.utime(path, ns=(2, 2))
    reverted = scan_entries(tmp_path, edited.cursor)
    assert reverted.changed_by_city == {"vallejo": ["vallejo/2019.yaml"]}
    assert reverted.fingerprint("vallejo") not in {first.fingerprint("vallejo"),
                                                   edited.fingerprint("vallejo")}

    (tmp_path / "benicia" / "2019.yaml").unlink()
    deleted = scan_entries(tmp_path, reverted.cursor)
    assert deleted.deleted == ["benicia/2019.yaml"]
    assert deleted.changed_by_city == {}


def unreadable(path):
    # The tests run as root, for whom chmod 000 leaves a file readable; /proc/self/mem is a
    # file (is_file() is true) whose reading from offset 0 fails with an I/O error.
    path.unlink(missing_ok=True)
    path.symlink_to("/proc/self/mem")


def test_an_unreadable_file_is_reported_and_retried_while_the_others_go_on(tmp_path):
    (tmp_path / "vallejo").mkdir()
    (tmp_path / "benicia").mkdir()
    (tmp_path / "benicia" / "2019.yaml").write_text("a: 1\n")
    unreadable(tmp_path / "vallejo" / "2019.yaml")

    first = scan_entries(tmp_path, None)
    assert first.changed_by_city == {"benicia": ["benicia/2019.yaml"]}
    assert [str(p) for p in first.problems] == [
        "vallejo/2019.yaml: error: field (file): readable: cannot read the file (Input/output "
        "error): make it a readable regular file, or move it out of the entries folder"]

    # Read again at the next tick, and taken once it can be read.
    assert [p.rule for p in scan_entries(tmp_path, first.cursor).problems] == ["readable"]
    (tmp_path / "vallejo" / "2019.yaml").unlink()
    (tmp_path / "vallejo" / "2019.yaml").write_text("a: 1\n")
    fixed = scan_entries(tmp_path, first.cursor)
    assert fixed.changed_by_city == {"vallejo": ["vallejo/2019.yaml"]}
    assert fixed.problems == []


def test_a_known_file_that_turns_unreadable_is_not_taken_for_deleted(tmp_path):
    (tmp_path / "vallejo").mkdir()
    path = tmp_path / "vallejo" / "2019.yaml"
    path.write_text("a: 1\n")
    first = scan_entries(tmp_path, None)

    unreadable(path)
    broken = scan_entries(tmp_path, first.cursor)
    assert (broken.deleted, broken.changed_by_city) == ([], {})
    assert [p.rule for p in broken.problems] == ["readable"]

    # Back with the same content: no new version.
    path.unlink()
    path.write_text("a: 1\n")
    assert scan_entries(tmp_path, broken.cursor).changed_by_city == {}


def test_a_file_not_in_utf8_is_reported_and_its_city_still_refreshed(tmp_path):
    (tmp_path / "vallejo").mkdir()
    (tmp_path / "vallejo" / "2019.yaml").write_bytes(b"city: Vallejo\nnotes: caf\xe9\n")
    changes = scan_entries(tmp_path, None)
    # The city's run refuses the file and records why, as for any malformed file.
    assert changes.changed_by_city == {"vallejo": ["vallejo/2019.yaml"]}
    assert [str(p) for p in changes.problems] == [
        "vallejo/2019.yaml: error: field (file): utf8: not UTF-8 text: byte 0xe9 at byte offset "
        "24 (line 2) cannot be decoded; save the file as UTF-8 (value: b'notes: caf\\xe9\\n')"]


def test_files_outside_a_known_city_folder_are_set_apart_once(tmp_path):
    for folder in ("atlantis", "San Jose", "Vallejo", "benicia"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "2019.yaml").write_text("a: 1\n")
    (tmp_path / "2019.yaml").write_text("a: 1\n")

    changes = scan_entries(tmp_path, None)
    assert changes.changed_by_city == {"benicia": ["benicia/2019.yaml"]}
    assert changes.outside_city_folders == {
        "": ["2019.yaml"], "San Jose": ["San Jose/2019.yaml"],
        "Vallejo": ["Vallejo/2019.yaml"], "atlantis": ["atlantis/2019.yaml"]}
    assert changes.outside_city_folder_messages() == [
        "2019.yaml: entry files belong in a city folder (e.g. vallejo/2019.yaml): move them "
        "there; not ingested",
        "San Jose/ (1 changed file(s), e.g. San Jose/2019.yaml): folder 'San Jose' is not a city "
        "key (lower case ascii with hyphens): move its files to san-jose/; not ingested, and no "
        "city partition or run is added",
        "Vallejo/ (1 changed file(s), e.g. Vallejo/2019.yaml): folder 'Vallejo' is not a city "
        "key (lower case ascii with hyphens): move its files to vallejo/; not ingested, and no "
        "city partition or run is added",
        "atlantis/ (1 changed file(s), e.g. atlantis/2019.yaml): folder 'atlantis' is not a "
        "known city key: move its files to the folder of their city, e.g. adelanto/ (the "
        "closest known key); not ingested, and no city partition or run is added",
    ]
    # Said once: unchanged at the next tick, they are not reported again.
    assert scan_entries(tmp_path, changes.cursor).outside_city_folders == {}
