from radiology.demo import pydicom_test_files
from radiology.dicom import PHI_KEYWORDS, metadata_table, read_dicom
from radiology.dicom.table import TABLE_COLUMNS
from radiology.synthetic import phantom_radiograph, write_phantom_dicom


def test_table_of_a_folder(tmp_path):
    image = phantom_radiograph((64, 48))
    write_phantom_dicom(tmp_path / "a" / "x.dcm", image, photometric="MONOCHROME1", pixel_spacing=(0.15, 0.16),
                        sop_instance_uid="1.2.3", patient_name="Roe^Richard")
    write_phantom_dicom(tmp_path / "y.dcm", image, encoding="jpeg2000")
    (tmp_path / "z.txt").write_text("hello")
    table = metadata_table(tmp_path)
    assert list(table.columns) == list(TABLE_COLUMNS)
    rows = table.set_index("source")
    assert rows.loc["a/x.dcm", "photometric"] == "MONOCHROME1"
    assert rows.loc["a/x.dcm", "spacing_row_mm"] == 0.15 and rows.loc["a/x.dcm", "spacing_col_mm"] == 0.16
    assert rows.loc["a/x.dcm", "sop_instance_uid"] == "1.2.3"
    assert rows.loc["y.dcm", "transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert rows.loc["z.txt", "error"] == "z.txt: not a DICOM file"  # as the source column names it, not absolute
    assert "Roe" not in table.to_csv()
    with_phi = metadata_table(tmp_path, include_phi=True).set_index("source")
    assert with_phi.loc["a/x.dcm", "PatientName"] == "Roe^Richard"
    assert set(PHI_KEYWORDS) <= set(with_phi.columns)


def test_record_of_a_real_cr():
    (path,) = [p for p in pydicom_test_files() if p.as_posix().endswith("CR1/6154")]
    meta = read_dicom(path).metadata
    assert meta.modality == "CR" and meta.photometric == "MONOCHROME1" and meta.inverted
