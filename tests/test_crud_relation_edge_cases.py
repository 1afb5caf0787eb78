"""Relations whose rows Django reads or writes in a less common way: a foreign key to another field than the
primary key, a related model whose default manager hides rows, upserts of loaded objects."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.crud_helpers import bulk, crud, record
from tests.testapp.models import Counter, Office, Post, Region, Topic

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_update_to_a_foreign_key_with_a_to_field_records_the_value_the_row_holds(audit_records):
    europe = Region.objects.create(code="EU", name="Europe")
    usa = Region.objects.create(code="US", name="USA")
    office = Office.objects.create(region=europe, name="Paris")
    audit_records.clear()

    Office.objects.filter(pk=office.pk).update(region=usa)

    assert Office.objects.values_list("region_id", flat=True).get(pk=office.pk) == "US"
    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Office", 1, operation="update", values={"region": "US"}, pks=[office.pk])
    ]


def test_a_reverse_add_through_a_to_field_records_the_value_the_rows_hold(audit_records):
    europe = Region.objects.create(code="EU", name="Europe")
    usa = Region.objects.create(code="US", name="USA")
    office = Office.objects.get(pk=Office.objects.create(region=europe, name="Rome").pk)
    audit_records.clear()

    usa.offices.add(office)
    office.name = "Roma"
    office.save()

    assert crud(audit_records) == [
        bulk("QUERYSET_UPDATE", "Office", 1, operation="update", values={"region": "US"}, pks=[office.pk]),
        record("UPDATE", "Office", office.pk, {"name": {"old": "Rome", "new": "Roma"}}),
    ]


def test_m2m_remove_and_clear_record_only_the_links_a_filtering_default_manager_lets_django_delete(
    audit_records,
):
    post = Post.objects.create(title="p")
    live, archived = Topic.objects.create(label="live"), Topic.objects.create(label="old")
    post.topics.add(live, archived)
    Topic.all_objects.filter(pk=archived.pk).update(archived=True)  # hidden by Topic.objects
    audit_records.clear()

    post.topics.remove(archived)  # Django deletes nothing: the default manager does not return it
    post.topics.clear()  # deletes the link to the live topic only

    links = Post.topics.through.objects.filter(post=post).values_list("topic_id", flat=True)
    assert list(links) == [archived.pk]
    assert crud(audit_records) == [
        record(
            "M2M_CLEAR", "Post", post.pk, {"topics": {"cleared": [live.pk]}}, related_model="testapp.Topic"
        ),
    ]


def test_m2m_remove_from_the_other_side_of_a_filtering_manager_records_what_was_deleted(audit_records):
    post, other = Post.objects.create(title="p"), Post.objects.create(title="q")
    topic = Topic.objects.create(label="live")
    topic.posts.add(post, other)
    audit_records.clear()

    topic.posts.remove(post)

    assert crud(audit_records) == [
        record(
            "M2M_REMOVE", "Topic", topic.pk, {"posts": {"removed": [post.pk]}}, related_model="testapp.Post"
        ),
    ]


@pytest.mark.parametrize(
    "conflicts",
    [{"update_conflicts": True, "update_fields": ["value"]}, {"ignore_conflicts": True}],
    ids=["update_conflicts", "ignore_conflicts"],
)
def test_an_upsert_of_a_loaded_object_leaves_it_no_snapshot(audit_records, conflicts):
    """The row may or may not hold what the object held: the next save cannot tell what it changes."""
    if "update_conflicts" in conflicts and connection.features.supports_update_conflicts_with_target:
        conflicts = {**conflicts, "unique_fields": ["key"]}  # MySQL takes none: any unique key conflicts
    Counter.objects.create(key="visits", value=10)
    counter = Counter.objects.get(key="visits")
    counter.value = 50
    Counter.objects.bulk_create([counter], **conflicts)
    audit_records.clear()

    counter.value = 10
    counter.save()

    assert Counter.objects.get(key="visits").value == 10
    unknown = {"old": None, "old_unknown": True}
    assert crud(audit_records) == [
        record(
            "UPDATE",
            "Counter",
            counter.pk,
            {"key": {**unknown, "new": "visits"}, "value": {**unknown, "new": 10}},
        )
    ]
