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

    (tmp_path / "benicia" / "2019.yaml").unlink()
    deleted = scan_entries(tmp_path, edited.cursor)
    assert deleted.deleted == ["benicia/2019.yaml"]
    assert deleted.changed_by_city == {}
