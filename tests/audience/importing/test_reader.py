import pytest

from campaigns.audience.importing.reader import open_table, sniff_delimiter


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_sniffs_the_delimiter_even_when_values_contain_the_others(delimiter):
    sample = delimiter.join(["email", "name", "company"]) + "\n" + delimiter.join(
        ["a@example.com", "Ana", '"Acme, Inc; Ltd | Co"']) + "\n"
    assert sniff_delimiter(sample) == delimiter


def test_a_single_column_file_is_read_whole(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("email\na@example.com\nb@example.com\n")
    table = open_table(path)
    assert table.header == ["email"]
    assert [list(c.frame[0]) for c in table.chunks] == [["a@example.com", "b@example.com"]]


def test_rows_are_numbered_as_in_the_file(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("\nemail,name\na@example.com,\"two\nlines\"\n\nb@example.com,B\n")
    table = open_table(path)
    assert table.header_row == 2
    frame = next(table.chunks).frame
    assert list(frame.index) == [3, 4, 5]
    assert frame.loc[5].tolist() == ["b@example.com", "B"]


def test_describes_what_it_detected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("email;name\na@example.com;Zoë\n".encode("cp1252"))
    assert open_table(path).detail == "cp1252, delimiter ;"


def rewrite_sheet(source, target, change):
    """A copy of the workbook SOURCE whose first sheet's XML is change(xml)."""
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            data = original.read(item)
            copy.writestr(item, change(data) if item.filename == "xl/worksheets/sheet1.xml" else data)
    return target


def test_a_workbook_is_read_a_chunk_at_a_time(make_xlsx, tmp_path, monkeypatch):
    from campaigns.audience.importing import reader
    from campaigns.exceptions import ImportRefused

    monkeypatch.setattr(reader, "CHUNK_ROWS", 10)
    source = make_xlsx({"S": [["email"]] + [[f"p{i}@example.com"] for i in range(60)]})
    # Damage at the very end of the sheet: chunks before it arrive before the damage is even read.
    damaged = rewrite_sheet(source, tmp_path / "damaged.xlsx",
                            lambda xml: xml[: xml.rindex(b"</sheetData>")] + b"<row r=\"62\"><c r=")
    chunks = open_table(damaged).chunks
    first = next(chunks)
    assert list(first.frame[0]) == [f"p{i}@example.com" for i in range(10)] and first.frame.index[0] == 2
    with pytest.raises(ImportRefused, match="damaged or incomplete"):
        list(chunks)


def test_the_row_limit_holds_while_a_workbook_streams_even_when_its_dimension_lies(make_xlsx, tmp_path,
                                                                                   monkeypatch):
    from campaigns.audience.importing import reader
    from campaigns.exceptions import ImportRefused

    monkeypatch.setattr(reader, "CHUNK_ROWS", 10)
    source = make_xlsx({"S": [["email"]] + [[f"p{i}@example.com"] for i in range(120)]})
    forged = rewrite_sheet(source, tmp_path / "forged.xlsx",
                           lambda xml: xml.replace(b'<dimension ref="A1:A121"', b'<dimension ref="A1:A2"'))
    chunks = open_table(forged, max_rows=100).chunks
    read = [next(chunks) for _ in range(10)]
    assert sum(len(c.frame) for c in read) == 100
    with pytest.raises(ImportRefused, match="more than 100 rows"):
        next(chunks)


def test_workbook_cells_read_as_the_text_a_spreadsheet_shows(make_xlsx):
    import datetime

    path = make_xlsx({"S": [["email", "n", "f", "day", "when", "yes", "at"],
                            ["a@example.com", 42, 3.5, datetime.date(2024, 1, 5),
                             datetime.datetime(2024, 1, 5, 13, 45, 10), True, datetime.time(9, 30)],
                            [None, None, None, None, None, None, None],
                            ["b@example.com", -1, 1e20, None, None, False, None]]})
    (chunk,) = open_table(path).chunks
    assert chunk.frame.values.tolist() == [
        ["a@example.com", "42", "3.5", "2024-01-05 00:00:00", "2024-01-05 13:45:10", "True", "09:30:00"],
        ["", "", "", "", "", "", ""],
        ["b@example.com", "-1", "100000000000000000000", "", "", "False", ""]]
    assert list(chunk.frame.index) == [2, 3, 4]


def test_a_workbook_with_shared_strings_as_excel_writes_them(tmp_path):
    from benchmarks.corpus import recipients_frame, write_xlsx

    path = tmp_path / "excel-style.xlsx"
    write_xlsx(path, 50)  # every text in xl/sharedStrings.xml, cells refer to it by index
    table = open_table(path)
    expected = recipients_frame(50)
    assert table.header == list(expected.columns)
    (chunk,) = table.chunks
    assert chunk.frame.values.tolist() == expected.astype(str).values.tolist()
