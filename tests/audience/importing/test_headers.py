import pytest

from campaigns.audience.importing.headers import map_headers, merge_tag_name
from campaigns.exceptions import ImportRefused


@pytest.mark.parametrize("header", ["email", "Email", " E-mail ", "EMAIL_ADDRESS", "Email Address", "e_mail",
                                    "E-Mail-Address", "mail"])
def test_email_column_variants(header):
    assert map_headers(["Name", header]).email == 1


@pytest.mark.parametrize("header, field", [("First Name", "first_name"), ("first_name", "first_name"),
                                           ("fname", "first_name"), ("FirstName", "first_name"),
                                           ("Given name", "first_name"), ("Last Name", "last_name"),
                                           ("surname", "last_name"), ("lname", "last_name"),
                                           ("Family-Name", "last_name")])
def test_name_column_variants(header, field):
    mapping = map_headers(["email", header])
    assert getattr(mapping, field) == 1
    assert mapping.data == []


def test_other_columns_become_merge_tags_that_templates_can_use():
    mapping = map_headers(["Email", "Company Name", "Código postal", "2024 Spend", "", "City", "city", "unsubscribe url"])
    assert mapping.data == [(1, "company_name"), (2, "codigo_postal"), (3, "col_2024_spend"), (4, "column_5"),
                            (5, "city"), (6, "city_2"), (7, "unsubscribe_url_2")]


def test_the_first_of_two_email_columns_is_the_address_and_the_other_is_kept():
    mapping = map_headers(["Email", "E-mail"])
    assert mapping.email == 0
    assert mapping.data == [(1, "e_mail")]


def test_no_email_column_is_refused_listing_the_columns():
    with pytest.raises(ImportRefused, match=r"no email column \(columns found: 'Name', 'Phone'\)"):
        map_headers(["Name", "Phone"])


def test_merge_tag_name():
    assert merge_tag_name("  Zip / Post Code ") == "zip_post_code"
