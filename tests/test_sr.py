"""DICOM SR of one measurement: values, references, identifiers (default none) and type-2 gaps."""
from __future__ import annotations

import pydicom
import pytest

import hostile
from hostile import PLANTED, PLANTED_UIDS, find_planted

hd = pytest.importorskip("highdicom")

ROW = {"percent_stenosis": 55.0, "mld_mm": 1.1, "reference_diameter_mm": 2.45, "mld_rc": [23.5, 30.0],
       "segment": "M1", "frame_index": 1, "run_id": "0123456789abcdef"}


@pytest.fixture
def planted(tmp_path):
    return hostile.write_xa(tmp_path / "p.dcm", hostile.tube_frames(24, 32, 3), identifiers=PLANTED,
                            uids=PLANTED_UIDS, pixel_spacing=(0.1, 0.1))


def _refs(ds):
    """(study, series, sop) UIDs the evidence sequence references, and the SCOORD's referenced SOP UIDs."""
    ev = [(s.StudyInstanceUID, r.SeriesInstanceUID, i.ReferencedSOPInstanceUID)
          for s in ds.CurrentRequestedProcedureEvidenceSequence for r in s.ReferencedSeriesSequence
          for i in r.ReferencedSOPSequence]
    scoord = []

    def walk(items):
        for item in items:
            if "ReferencedSOPSequence" in item:
                scoord.extend(x.ReferencedSOPInstanceUID for x in item.ReferencedSOPSequence)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return ev, scoord


def test_default_sr_has_no_identifiers_and_consistent_pseudonymous_references(planted, tmp_path):
    from stenosis.sr import pseudonymous_uid, write_sr

    write_sr(ROW, [str(planted)], tmp_path / "a.dcm")
    write_sr(ROW, [str(planted)], tmp_path / "b.dcm")
    raw = (tmp_path / "a.dcm").read_bytes()
    assert find_planted(raw) == []
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert str(ds.PatientName) == "" and ds.PatientID == ROW["run_id"]
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert "InstitutionName" not in ds or not ds.InstitutionName
    assert ds.AccessionNumber == "" and str(ds.ReferringPhysicianName) == ""
    study = PLANTED_UIDS["StudyInstanceUID"]
    assert ds.StudyInstanceUID == pseudonymous_uid("study", study)
    ev, scoord = _refs(ds)
    assert len(ev) == 1 and ev[0][0] == ds.StudyInstanceUID
    assert scoord == [ev[0][2]]  # the region references the instance the evidence lists
    assert all(u.startswith("2.25.") and len(u) <= 64 for u in ev[0])
    # deterministic: the same measurement gives the same UIDs
    other = pydicom.dcmread(tmp_path / "b.dcm")
    assert (other.SeriesInstanceUID, other.SOPInstanceUID) == (ds.SeriesInstanceUID, ds.SOPInstanceUID)
    # values still there
    (group,) = hd.sr.srread(tmp_path / "a.dcm").content.get_planar_roi_measurement_groups()
    assert {m.unit.value: m.value for m in group.get_measurements()}["%"] == pytest.approx(55.0)


def test_keep_identifiers_copies_the_source_patient_and_uids(planted, tmp_path):
    from stenosis.sr import write_sr

    write_sr(ROW, [str(planted)], tmp_path / "k.dcm", keep_identifiers=True)
    ds = pydicom.dcmread(tmp_path / "k.dcm")
    assert ds.PatientID == PLANTED["PatientID"] and str(ds.PatientName) == PLANTED["PatientName"]
    assert ds.StudyInstanceUID == PLANTED_UIDS["StudyInstanceUID"]
    ev, scoord = _refs(ds)
    assert ev == [tuple(PLANTED_UIDS[k] for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))]
    assert scoord == [PLANTED_UIDS["SOPInstanceUID"]]


@pytest.mark.parametrize("keep", [False, True])
def test_missing_type2_attributes_are_written_empty(tmp_path, keep):
    from stenosis.sr import write_sr

    path = hostile.write_xa(tmp_path / "anon.dcm", hostile.tube_frames(24, 32, 2))
    ds = pydicom.dcmread(path)
    for kw in ("PatientSex", "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber",
               "PatientBirthDate", "PatientName"):
        if kw in ds:
            del ds[kw]
    ds.save_as(path, enforce_file_format=True)
    write_sr(ROW, [str(path)], tmp_path / "s.dcm", keep_identifiers=keep)
    out = pydicom.dcmread(tmp_path / "s.dcm")
    assert out.PatientSex == "" and out.StudyID == "" and out.PatientBirthDate == ""


def _uids(path):
    ds = pydicom.dcmread(path)
    return ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_site_secret_keys_the_pseudonymous_uids(planted, tmp_path, monkeypatch):
    from stenosis.sr import write_sr

    for var in ("STENOSIS_SITE_SECRET", "STENOSIS_SITE_SECRET_FILE", "STENOSIS_ID_KEY"):
        monkeypatch.delenv(var, raising=False)
    write_sr(ROW, [str(planted)], tmp_path / "default.dcm")
    monkeypatch.setenv("STENOSIS_SITE_SECRET", "our-site-secret")
    write_sr(ROW, [str(planted)], tmp_path / "env.dcm")
    monkeypatch.delenv("STENOSIS_SITE_SECRET")
    (tmp_path / "secret.txt").write_text("our-site-secret\n")
    monkeypatch.setenv("STENOSIS_SITE_SECRET_FILE", str(tmp_path / "secret.txt"))
    write_sr(ROW, [str(planted)], tmp_path / "file.dcm")
    default, env, file = (_uids(tmp_path / f"{n}.dcm") for n in ("default", "env", "file"))
    assert env == file  # the same secret, from the environment or from a file
    assert all(a != b for a, b in zip(default, env))  # PatientID and every UID change with the key
    assert env[0] != ROW["run_id"]
    assert find_planted((tmp_path / "env.dcm").read_bytes()) == []
    (tmp_path / "secret.txt").write_text("")
    with pytest.raises(Exception, match="site secret file .* is empty"):
        write_sr(ROW, [str(planted)], tmp_path / "empty.dcm")


def test_sr_names_the_run_it_measured(planted, tmp_path):
    """By its run id: a file name may hold a patient's name (a new user's find, session 13: the
    pseudonymous SR carried it); by its path only when identifiers are kept."""
    from stenosis.sr import write_sr

    write_sr({**ROW, "path": "DOE_JOHN/run ü 7.dcm"}, [str(planted)], tmp_path / "a.dcm")
    write_sr({**ROW, "path": "site 3/run_7.dcm"}, [str(planted)], tmp_path / "b.dcm")
    (group,) = hd.sr.srread(tmp_path / "a.dcm").content.get_planar_roi_measurement_groups()
    assert f"run {ROW['run_id']}" in str(group.tracking_identifier)
    assert b"DOE_JOHN" not in (tmp_path / "a.dcm").read_bytes()
    assert _uids(tmp_path / "a.dcm")[3] != _uids(tmp_path / "b.dcm")[3]  # two runs, two SR instances
    write_sr({**ROW, "path": "DOE_JOHN/run ü 7.dcm"}, [str(planted)], tmp_path / "k.dcm", keep_identifiers=True)
    (group,) = hd.sr.srread(tmp_path / "k.dcm").content.get_planar_roi_measurement_groups()
    assert "DOE_JOHN/run ü 7.dcm" in str(group.tracking_identifier)


def test_site_secret_keys_the_run_ids_too(monkeypatch):
    """The CSV's run_id is a pseudonym like the SR's UIDs: the site secret keys both."""
    from stenosis.io import run_id_from_uids

    monkeypatch.delenv("STENOSIS_SITE_SECRET", raising=False)
    monkeypatch.delenv("STENOSIS_SITE_SECRET_FILE", raising=False)
    plain = run_id_from_uids("1.2.3", "1.2.3.4", "1.2.3.4.5")
    monkeypatch.setenv("STENOSIS_SITE_SECRET", "our-site-secret")
    keyed = run_id_from_uids("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert keyed != plain
    monkeypatch.setenv("STENOSIS_SITE_SECRET", "another-site")
    assert run_id_from_uids("1.2.3", "1.2.3.4", "1.2.3.4.5") not in (plain, keyed)
