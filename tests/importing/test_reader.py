import pytest

from campaigns.importing.reader import open_table, sniff_delimiter


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
