"""Contact and Interaction: one shape whatever the API version, the raw record kept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from ratekit_cxone import Contact, CXoneStatistics, Interaction, RecordPage
from ratekit_cxone._models import parse_datetime

#: One contact as versions 21 to 32 of the API give it.
OLD = {
    "contactId": 584012,
    "masterContactId": 584010,
    "contactStart": "2024-03-01T09:15:00.000Z",
    "fromAddr": "+15551230000",
    "toAddr": "+15559870000",
    "mediaType": 4,
    "mediaTypeName": "Phone Call",
    "skillId": 11,
    "agentId": 7,
    "totalDurationSeconds": 123.5,
    "confSeconds": 0,
    "ACWSeconds": 12,
    "lastUpdateTime": "2024-03-01T09:20:00.123Z",
    "teamId": 3,
}

#: The same contact as version 33 and later give it.
NEW = {
    "contactId": 584012,
    "masterContactId": 584010,
    "contactStartDate": "2024-03-01T10:15:00+01:00",
    "fromAddress": "+15551230000",
    "toAddress": "+15559870000",
    "mediaTypeId": 4,
    "mediaTypeName": "Phone Call",
    "skillId": 11,
    "agentId": 7,
    "totalDurationSeconds": 123.5,
    "conferenceSeconds": 0,
    "acwSeconds": 12.0,
    "lastUpdateTime": "2024-03-01T09:20:00.1230000Z",
    "campaignId": 9,
}


def test_both_versions_of_a_contact_normalise_equal():
    """The v21-v32 and the v33+ spellings of one contact give equal Contacts."""
    old, new = Contact.from_raw(OLD), Contact.from_raw(NEW)
    assert old == new
    assert hash(old) == hash(new)
    assert new == Contact(
        contact_id=584012,
        master_contact_id=584010,
        start=datetime(2024, 3, 1, 9, 15, tzinfo=timezone.utc),
        from_address="+15551230000",
        to_address="+15559870000",
        media_type="Phone Call",
        skill_id=11,
        agent_id=7,
        total_duration_seconds=123.5,
        conference_seconds=0.0,
        acw_seconds=12.0,
        last_update_time=datetime(2024, 3, 1, 9, 20, 0, 123000, tzinfo=timezone.utc),
    )
    assert new.start is not None
    assert new.start.utcoffset() == timedelta(hours=1)  # the offset given, same instant
    assert new.key == "584012"


def test_the_raw_record_is_kept_whole_and_apart():
    """The raw record holds every field as received, is not compared, and is a copy."""
    record = dict(NEW)
    contact = Contact.from_raw(record)
    assert contact.raw == NEW
    assert contact.raw["campaignId"] == 9
    record["contactId"] = 1
    assert contact.raw["contactId"] == 584012
    assert json.loads(json.dumps(contact.raw)) == NEW  # fit for JSON Lines as is
    assert "raw" not in repr(contact)
    assert Contact.from_raw(OLD).raw != contact.raw


def test_missing_and_null_optional_fields_are_none():
    """Only contactId is required: absent, null or empty fields become None."""
    contact = Contact.from_raw({"contactId": "17", "fromAddress": "", "agentId": None})
    assert contact == Contact(contact_id=17)
    assert contact.start is None
    assert contact.from_address is None
    assert contact.agent_id is None
    assert contact.media_type is None


def test_media_type_falls_back_to_its_id_or_code():
    """Without mediaTypeName, the id (v33+) or mediaType (older) is the media type, as text."""
    assert Contact.from_raw({"contactId": 1, "mediaTypeId": 4}).media_type == "4"
    assert Contact.from_raw({"contactId": 1, "mediaType": "Email"}).media_type == "Email"


def test_newer_names_win_when_a_record_has_both():
    """A record with both spellings takes the v33+ one."""
    contact = Contact.from_raw({"contactId": 1, "fromAddr": "old", "fromAddress": "new"})
    assert contact.from_address == "new"


@pytest.mark.parametrize(
    ("record", "error", "match"),
    [
        ({}, ValueError, "must have a contactId; its fields: none"),
        (
            {"contactID": 5, "agentId": 1},
            ValueError,
            "must have a contactId; its fields: agentId, contactID",
        ),
        ({"contactId": None}, ValueError, "must have a contactId"),
        ({"contactId": "abc"}, ValueError, "contactId must be an integer, got 'abc'"),
        ({"contactId": 1.5}, ValueError, "contactId must be an integer"),
        ({"contactId": True}, TypeError, "contactId must be an integer"),
        ({"contactId": [1]}, TypeError, "contactId must be an integer"),
        ({"contactId": 1, "skillId": "x"}, ValueError, "skillId must be an integer"),
        ({"contactId": 1, "acwSeconds": "nan"}, ValueError, "acwSeconds must be a finite number"),
        ({"contactId": 1, "ACWSeconds": {}}, TypeError, "ACWSeconds must be a number"),
        ({"contactId": 1, "contactStart": "yesterday"}, ValueError, "contactStart must be an ISO"),
        ({"contactId": 1, "lastUpdateTime": 5}, TypeError, "lastUpdateTime must be an ISO"),
        ({"contactId": 1, "toAddress": ["x"]}, TypeError, "toAddress must be text"),
    ],
)
def test_bad_records_raise_errors_naming_the_field(record, error, match):
    """A missing or bad contactId, or a field of the wrong kind, is a clear error."""
    with pytest.raises(error, match=match):
        Contact.from_raw(record)


def test_a_record_that_is_not_an_object_is_refused():
    """Only mappings are records."""
    with pytest.raises(TypeError, match="a contact must be a JSON object, got list"):
        Contact.from_raw([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="an interaction must be a JSON object"):
        Interaction.from_raw("x")  # type: ignore[arg-type]


def test_interactions_are_read_leniently_but_need_an_id():
    """Interactions: id as text, optional fields None, the raw record kept."""
    raw = {"id": 42, "status": "closed", "channel": "chat", "createdTime": "2024-01-02T03:04:05Z"}
    interaction = Interaction.from_raw(raw)
    assert interaction == Interaction(
        id="42",
        status="closed",
        channel="chat",
        created_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    assert interaction.key == "42"
    assert interaction.raw == raw
    assert Interaction.from_raw({"id": "a-1"}) == Interaction(id="a-1")
    for bad in ({}, {"id": ""}, {"id": None}, {"status": "open"}):
        with pytest.raises(ValueError, match="must have an id"):
            Interaction.from_raw(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T09:15:00Z", datetime(2024, 3, 1, 9, 15, tzinfo=timezone.utc)),
        ("2024-03-01T09:15:00.5z", datetime(2024, 3, 1, 9, 15, 0, 500000, tzinfo=timezone.utc)),
        (
            "2024-03-01T09:15:00.1234567Z",
            datetime(2024, 3, 1, 9, 15, 0, 123456, tzinfo=timezone.utc),
        ),
        ("2024-03-01 09:15", datetime(2024, 3, 1, 9, 15, tzinfo=timezone.utc)),
        (
            "2024-03-01T09:15:00-05:30",
            datetime(2024, 3, 1, 9, 15, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        (
            "2024-03-01T09:15:00+0200",
            datetime(2024, 3, 1, 9, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2024-03-01T09:15:00+02",
            datetime(2024, 3, 1, 9, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_dates_with_z_offsets_and_long_fractions_parse(text, expected):
    """ISO 8601 with Z or an offset, any fraction length; no zone means UTC."""
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text", ["", "2024-03-01", "2024-13-01T00:00:00Z", "01/03/2024 09:15", "T09:15Z"]
)
def test_bad_dates_are_refused(text):
    """Text that is not a whole date and time raises ValueError."""
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_pages_and_statistics_are_frozen_values():
    """RecordPage shows its size, not its records; statistics default to zero."""
    page = RecordPage(0, [Contact(contact_id=1), Contact(contact_id=2)], 10)
    assert repr(page) == "RecordPage(position=0, records=<2 records>, total=10)"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        page.position = 3  # type: ignore[misc]
    assert CXoneStatistics() == CXoneStatistics(0, 0, 0, 0, 0, 0)
