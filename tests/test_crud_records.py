"""CREATE, UPDATE and DELETE records: exact content, exact diffs, no extra query, selection and masking."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.crud_helpers import audit_settings, book_values, created_book_changes, crud, record
from tests.testapp.models import ApiClient, Author, Book, Tag

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def author():
    return Author.objects.create(name="Frank")


def test_create_records_every_field_as_the_database_stores_it(audit_records, author):
    audit_records.clear()
    book = Book.objects.create(author=author, **book_values())

    assert crud(audit_records) == [record("CREATE", "Book", book.pk, created_book_changes(author.pk))]


def test_create_and_delete_records_hold_the_values_of_their_moment(audit_records, author):
    """Their changes are built later, on the worker (here: after all of this), from snapshots that later
    saves and changes in place never touch."""
    audit_records.clear()
    book = Book.objects.create(author=author, **book_values())
    pk = book.pk
    book.pages = 999
    book.metadata["edition"] = 99
    book.save()
    book.delete()
    book.pages = 1000
    book.metadata["edition"] = 100

    create, update, delete = crud(audit_records)
    assert create == record("CREATE", "Book", pk, created_book_changes(author.pk))
    assert update["changes"]["pages"] == {"old": 412, "new": 999}
    deleted = {name: change["old"] for name, change in delete["changes"].items()}
    assert deleted == {
        **{name: change["new"] for name, change in create["changes"].items()},
        "pages": 999,
        "metadata": {**create["changes"]["metadata"]["new"], "edition": 99},
    }


def test_update_records_only_the_changed_fields_with_old_and_new_values(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    other = Author.objects.create(name="Brian")
    audit_records.clear()

    loaded = Book.objects.get(pk=book.pk)
    loaded.title = "Dune Messiah"
    loaded.price = Decimal("21.50")
    loaded.metadata["edition"] = 2  # changed in place: still seen
    loaded.published = "1969-10-15"  # a string, as forms and APIs assign it: recorded as the date it becomes
    loaded.last_sold_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    loaded.author = other
    loaded.cover = "covers/messiah.png"
    loaded.save()

    assert crud(audit_records) == [
        record(
            "UPDATE",
            "Book",
            book.pk,
            {
                "title": {"old": "Dune", "new": "Dune Messiah"},
                "price": {"old": "19.99", "new": "21.50"},
                "published": {"old": None, "new": "1969-10-15"},
                "last_sold_at": {"old": None, "new": "2026-01-02T03:04:05+00:00"},
                "metadata": {
                    "old": {"edition": 1, "languages": ["en"]},
                    "new": {"edition": 2, "languages": ["en"]},
                },
                "cover": {"old": "covers/dune.png", "new": "covers/messiah.png"},
                "author": {"old": author.pk, "new": other.pk},
            },
        )
    ]


def test_values_equal_to_what_was_loaded_are_not_changes(audit_records, author):
    book = Book.objects.create(author=author, **book_values(published=dt.date(1965, 8, 1)))
    audit_records.clear()

    loaded = Book.objects.get(pk=book.pk)
    loaded.price = Decimal("19.990")  # same number
    loaded.pages = "412"
    loaded.published = "1965-08-01"
    loaded.metadata = {"languages": ["en"], "edition": 1}  # same JSON value, other key order
    loaded.save()

    assert crud(audit_records) == []


def test_a_save_that_changes_nothing_writes_nothing_unless_kept(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()
    Book.objects.get(pk=book.pk).save()
    assert crud(audit_records) == []

    with audit_settings(KEEP_EMPTY_UPDATES=True):
        audit_records.clear()
        Book.objects.get(pk=book.pk).save()
        assert crud(audit_records) == [record("UPDATE", "Book", book.pk, {})]


def test_successive_saves_diff_against_the_last_save(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    book.pages = 500
    book.save()
    book.pages = 501
    book.save()

    updates = crud(audit_records, event_type="UPDATE")
    assert [update["changes"] for update in updates] == [
        {"pages": {"old": 412, "new": 500}},
        {"pages": {"old": 500, "new": 501}},
    ]


def test_update_fields_limits_the_diff_to_the_fields_written(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()
    book.title = "Written"
    book.pages = 1  # changed in memory, not written
    book.save(update_fields=["title"])
    book.save(update_fields=["pages"])

    assert [r["changes"] for r in crud(audit_records)] == [
        {"title": {"old": "Dune", "new": "Written"}},
        {"pages": {"old": 412, "new": 1}},
    ]


def test_deferred_fields_are_neither_written_nor_recorded(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()
    partial = Book.objects.only("pk", "title").get(pk=book.pk)
    partial.title = "Only title loaded"
    partial.save()

    assert crud(audit_records) == [
        record("UPDATE", "Book", book.pk, {"title": {"old": "Dune", "new": "Only title loaded"}})
    ]


def test_a_save_of_an_orm_loaded_instance_costs_no_extra_query(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    loaded = Book.objects.get(pk=book.pk)
    loaded.title = "Counted"
    loaded.pages = 1

    with audit_settings(ENABLED=False):
        unaudited = Book.objects.get(pk=book.pk)
        unaudited.title = "Counted"
        unaudited.pages = 2
        with CaptureQueriesContext(connection) as baseline:
            unaudited.save()
    with CaptureQueriesContext(connection) as audited:
        loaded.save()

    assert len(audited.captured_queries) == len(baseline.captured_queries) == 1
    assert audited.captured_queries[0]["sql"].startswith("UPDATE")
    assert crud(audit_records)[-1]["changes"] == {
        "title": {"old": "Dune", "new": "Counted"},
        "pages": {"old": 412, "new": 1},
    }


def test_delete_records_the_last_loaded_values(audit_records, author):
    tag = Tag.objects.create(label="sf")
    audit_records.clear()
    pk = tag.pk
    Tag.objects.get(pk=pk).delete()

    assert crud(audit_records) == [record("DELETE", "Tag", pk, {"label": {"old": "sf", "new": None}})]


def test_djangos_internals_are_not_audited(audit_records):
    user = User.objects.create_user("ann", password="pw-not-logged")
    audit_records.clear()
    store = SessionStore()
    store["user"] = user.pk
    store.save()
    ContentType.objects.get_for_model(Tag)
    Permission.objects.create(codename="x", name="x", content_type=ContentType.objects.get_for_model(Tag))
    Permission.objects.filter(codename="x").delete()

    assert crud(audit_records) == []


def test_user_password_changes_are_masked(audit_records):
    user = User.objects.create_user("bob", password="first-secret")
    user.set_password("second-secret")
    user.save()

    created, updated = crud(audit_records, model="User")
    assert created["changes"]["password"] == {"changed": True, "masked": True}
    assert created["changes"]["username"] == {"old": None, "new": "bob"}
    assert updated["changes"] == {"password": {"changed": True, "masked": True}}
    assert "secret" not in str(audit_records.all_records)
    assert "pbkdf2" not in str(audit_records.all_records)


def test_secret_named_fields_and_mask_fields_are_masked(audit_records):
    with audit_settings(MASK_FIELDS={"testapp.ApiClient": ["notes"]}):
        client = ApiClient.objects.create(name="crm", api_token="tok-1", notes="private")
        client.api_token = "tok-2"
        client.notes = "more private"
        client.name = "crm2"
        client.save()

        created, updated = crud(audit_records, model="ApiClient")
    masked = {"changed": True, "masked": True}
    assert created["changes"] == {"name": {"old": None, "new": "crm"}, "api_token": masked, "notes": masked}
    assert updated["changes"] == {"name": {"old": "crm", "new": "crm2"}, "api_token": masked, "notes": masked}
    assert "tok-" not in str(audit_records.all_records) and "private" not in str(audit_records.all_records)


def test_exclude_fields_leaves_fields_out(audit_records, author):
    with audit_settings(EXCLUDE_FIELDS={"testapp.Book": ["summary", "metadata"]}):
        book = Book.objects.create(author=author, **book_values())
        book.summary = "not recorded"
        book.metadata = {"not": "recorded"}
        book.save()  # only excluded fields changed: no record
        created = crud(audit_records, model="Book")

    expected = created_book_changes(author.pk)
    del expected["summary"], expected["metadata"]
    assert created == [record("CREATE", "Book", book.pk, expected)]


@pytest.mark.parametrize(
    ("include", "exclude", "audited"),
    [
        ([], ["testapp.Tag"], {"Author"}),
        ([], ["testapp.*"], set()),
        (["testapp.Tag"], [], {"Tag"}),
        (["testapp.*"], ["testapp.Author"], {"Tag"}),
        (["sessions.Session", "testapp.Tag"], [], {"Tag", "Session"}),
    ],
)
def test_include_and_exclude_models(audit_records, include, exclude, audited):
    with audit_settings(INCLUDE_MODELS=include, EXCLUDE_MODELS=exclude):
        Author.objects.create(name="a")
        Tag.objects.create(label="t")
        store = SessionStore()
        store["k"] = "session payload"
        store.save()
        models = {r["model"] for r in crud(audit_records)}
        session_records = crud(audit_records, model="Session")

    assert models == audited
    for session_record in session_records:
        assert session_record["changes"]["session_data"] == {"changed": True, "masked": True}


def test_the_fields_redaction_skips_hold_only_names_from_the_schema(audit_records, author):
    """The built-in redactor does not scan ``event_type``, ``model``, ``model_label`` and ``db``: safe only
    while capture fills them from the schema (event names, model classes, database aliases), whatever the
    data."""
    from django.apps import apps
    from django.conf import settings

    from activity_audit.crud import events
    from activity_audit.plugins.redaction import _NOT_SCANNED

    assert {"event_type", "model", "model_label", "db"} <= _NOT_SCANNED
    audit_records.clear()
    secret_looking = "token=abc123def456 Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig 4111 1111 1111 1111"
    book = Book.objects.create(author=author, **{**book_values(), "title": secret_looking})
    tag_label = "token=abc123def456ghi789"  # Tag.label holds 50 characters
    book.tags.add(Tag.objects.create(label=tag_label))
    book.title = "plain"
    book.save()
    Book.objects.filter(pk=book.pk).update(pages=7)
    book.delete()

    records = crud(audit_records)
    assert len(records) >= 5
    models = {model.__name__ for model in apps.get_models()}
    labels = {model._meta.label for model in apps.get_models()}
    event_names = {value for name, value in vars(events).items() if name.isupper() and isinstance(value, str)}
    for written in records:
        assert written["model"] in models
        assert written["model_label"] in labels
        assert written["db"] in settings.DATABASES
        assert written["event_type"] in event_names
    assert secret_looking not in str(records)  # the same texts in scanned fields are masked
    assert tag_label not in str(records)


def test_values_of_another_type_are_recorded_as_the_database_stores_them(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    loaded = Book.objects.get(pk=book.pk)
    audit_records.clear()

    loaded.author_id = str(author.pk)  # the same row, given as text
    loaded.title = 1984  # a CharField stores text
    loaded.price = Decimal("19.994")  # the column keeps two places: 19.99, the value loaded
    loaded.save()

    assert Book.objects.get(pk=book.pk).price == Decimal("19.99")
    assert crud(audit_records) == [
        record("UPDATE", "Book", book.pk, {"title": {"old": "Dune", "new": "1984"}})
    ]


def test_a_saved_decimal_is_rounded_to_its_places_as_the_database_rounds_it(audit_records, author):
    audit_records.clear()
    book = Book.objects.create(author=author, **book_values(price=Decimal("7.125"), pages=0))
    stored = Book.objects.get(pk=book.pk).price
    book.price = Decimal("0")
    book.save()

    created, updated = crud(audit_records)
    # SQLite ends up with half-even rounding; PostgreSQL and MySQL round half away from zero.
    assert stored == Decimal("7.12" if connection.vendor == "sqlite" else "7.13")
    assert created["changes"]["price"] == {"old": None, "new": str(stored)}
    assert updated["changes"] == {"price": {"old": str(stored), "new": "0.00"}}
    assert Book.objects.get(pk=book.pk).price == Decimal("0.00")


def test_an_expression_saved_is_recorded_as_such_and_each_time_it_is_applied(audit_records, author):
    from django.db.models import F

    book = Book.objects.create(author=author, **book_values(pages=100))
    audit_records.clear()

    book.pages = F("pages") + 1
    book.save()  # 100 -> 101
    if not hasattr(book.pages, "resolve_expression"):
        # Django 6.0+ reads the value back (RETURNING) before post_save: the record has the real value.
        book.title = "Dune Messiah"
        book.save()
        assert crud(audit_records) == [
            record("UPDATE", "Book", book.pk, {"pages": {"old": 100, "new": 101}}),
            record("UPDATE", "Book", book.pk, {"title": {"old": "Dune", "new": "Dune Messiah"}}),
        ]
        return
    book.title = "Dune Messiah"
    book.save()  # Django applies the expression again: 101 -> 102

    assert Book.objects.get(pk=book.pk).pages == 102
    increment = str(F("pages") + 1)
    assert crud(audit_records) == [
        record("UPDATE", "Book", book.pk, {"pages": {"old": 100, "new": increment, "expression": True}}),
        record(
            "UPDATE",
            "Book",
            book.pk,
            {
                "title": {"old": "Dune", "new": "Dune Messiah"},
                "pages": {"old": None, "new": increment, "old_unknown": True, "expression": True},
            },
        ),
    ]
    book.refresh_from_db()
    audit_records.clear()
    book.pages = 7
    book.save()
    assert crud(audit_records) == [record("UPDATE", "Book", book.pk, {"pages": {"old": 102, "new": 7}})]


def test_a_delete_of_an_instance_never_loaded_does_not_make_values_up(audit_records):
    tag = Tag.objects.create(label="real")
    audit_records.clear()

    Tag(pk=tag.pk).delete()

    assert crud(audit_records) == [record("DELETE", "Tag", tag.pk, {}, old_values_unknown=True)]


def test_a_project_receiver_that_saves_again_is_recorded_after_the_create(audit_records):
    from django.db.models.signals import post_save

    from activity_audit.crud import receivers

    def name_after_pk(sender, instance, created, **kwargs):
        if created:
            instance.label = f"tag-{instance.pk}"
            instance.save(update_fields=["label"])

    # Connected before the package's receivers, as a models.py @receiver is.
    post_save.disconnect(sender=Tag, dispatch_uid=receivers._UID)
    post_save.connect(name_after_pk, sender=Tag, dispatch_uid="tests.name_after_pk")
    receivers._connected.discard(Tag)
    receivers.connect({*receivers._connected, Tag})
    try:
        audit_records.clear()
        tag = Tag.objects.create(label="draft")
    finally:
        post_save.disconnect(sender=Tag, dispatch_uid="tests.name_after_pk")

    assert crud(audit_records) == [
        record("CREATE", "Tag", tag.pk, {"label": {"old": None, "new": "draft"}}),
        record("UPDATE", "Tag", tag.pk, {"label": {"old": "draft", "new": f"tag-{tag.pk}"}}),
    ]


def test_a_text_choice_is_recorded_as_its_text(audit_records, author):
    from django.db import models

    class Title(models.TextChoices):
        DUNE = "Dune"
        MESSIAH = "Dune Messiah"

    book = Book.objects.create(author=author, **book_values())
    loaded = Book.objects.get(pk=book.pk)
    audit_records.clear()

    loaded.title = Title.DUNE  # the text already stored: no change
    loaded.save()
    loaded.title = Title.MESSIAH
    loaded.save()

    [update] = crud(audit_records)
    assert update["changes"] == {"title": {"old": "Dune", "new": "Dune Messiah"}}
    assert type(update["changes"]["title"]["new"]) is str


def test_a_partial_refresh_of_an_instance_never_loaded_knows_only_the_fields_it_read(audit_records, author):
    book = Book.objects.create(author=author, **book_values())
    audit_records.clear()

    stub = Book(pk=book.pk, author=author, title="Stub")  # built by hand: the other fields are defaults
    stub.refresh_from_db(fields=["pages"])
    stub.pages = 1
    stub.save()  # writes every field: title and summary change in the row too

    stored = Book.objects.get(pk=book.pk)
    assert (stored.title, stored.summary, stored.pages) == ("Stub", "", 1)
    (updated,) = crud(audit_records)
    assert updated["changes"]["pages"] == {"old": 412, "new": 1}
    assert updated["changes"]["title"] == {"old": None, "new": "Stub", "old_unknown": True}
    assert updated["changes"]["summary"] == {"old": None, "new": "", "old_unknown": True}
