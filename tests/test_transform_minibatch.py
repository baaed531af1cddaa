"""Records and mini-batches: SplitType, BatchStrategy and MaxPayloadInMB, records never cut in two."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulators.minibatch import MIB, Record, RecordTooLarge, pack, split_records


def records(text: bytes, split="Line"):
    return list(split_records(io.BytesIO(text), split))


def test_line_split_numbers_records_and_lines_and_skips_blank_lines():
    got = records(b"a,1\r\n\nb,2\n  \nc,3")
    assert [(r.number, r.line, r.data) for r in got] == [(1, 1, b"a,1"), (2, 3, b"b,2"), (3, 5, b"c,3")]


def test_split_none_is_the_whole_file():
    assert records(b"a\nb\n", "None") == [Record(1, 1, b"a\nb\n")]


def test_multirecord_packs_whole_records_up_to_the_limit_exactly():
    recs = records(b"aaaa\nbbbb\ncccc\ndddd\n")  # each record is 5 bytes on the wire (with its newline)
    batches = list(pack(recs, split_type="Line", strategy="MultiRecord", limit=10))
    assert [b.payload for b in batches] == [b"aaaa\nbbbb\n", b"cccc\ndddd\n"]  # 10 bytes: exactly at the limit
    batches = list(pack(recs, split_type="Line", strategy="MultiRecord", limit=9))
    assert [b.payload for b in batches] == [b"aaaa\n", b"bbbb\n", b"cccc\n", b"dddd\n"]
    assert [b.span for b in batches] == ["record 1", "record 2", "record 3", "record 4"]


def test_singlerecord_sends_one_record_per_request():
    recs = records(b"a\nb\nc\n")
    batches = list(pack(recs, split_type="Line", strategy="SingleRecord", limit=6 * MIB))
    assert [b.payload for b in batches] == [b"a\n", b"b\n", b"c\n"]


def test_no_limit_when_max_payload_is_zero():
    recs = records(b"x" * 100 + b"\n" + b"y" * 100 + b"\n")
    assert len(list(pack(recs, split_type="Line", strategy="MultiRecord", limit=None))) == 1


def test_a_record_larger_than_the_limit_is_an_error_naming_it():
    recs = records(b"ok\n" + b"z" * 20 + b"\nok\n")
    expected = r"record 2 \(line 2\) is 21 bytes, larger than MaxPayloadInMB=0 \(16 bytes"
    with pytest.raises(RecordTooLarge, match=expected):
        list(pack(recs, split_type="Line", strategy="MultiRecord", limit=16))


def test_the_limit_applies_to_what_is_sent_after_the_input_filter():
    recs = records(b"id-1,1,2\nid-2,3,4\n")
    batches = list(pack(recs, split_type="Line", strategy="MultiRecord", limit=8, encode=lambda r: r.data[5:]))
    assert [b.payload for b in batches] == [b"1,2\n3,4\n"]


def test_split_none_file_larger_than_the_limit_is_an_error():
    # "Exceeding the MaxPayloadInMB limit causes an error. This might happen with a large dataset if it can't be
    #  split, the SplitType parameter is set to none, ..."
    recs = records(b"a" * 11, "None")
    with pytest.raises(RecordTooLarge, match=r"record 1 .* is 11 bytes"):
        list(pack(recs, split_type="None", strategy="MultiRecord", limit=10))
    assert [b.payload for b in pack(recs, split_type="None", strategy="MultiRecord", limit=11)] == [b"a" * 11]


@given(
    lines=st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and b.strip()), max_size=40),
    limit=st.integers(min_value=31, max_value=200),
)
def test_batches_never_exceed_the_limit_and_never_cut_a_record(lines, limit):
    stripped = [ln.rstrip(b"\r") for ln in lines]
    recs = [Record(i + 1, i + 1, d) for i, d in enumerate(stripped)]
    batches = list(pack(recs, split_type="Line", strategy="MultiRecord", limit=limit))
    assert all(len(b.payload) <= limit for b in batches)
    assert b"".join(b.payload for b in batches) == b"".join(d + b"\n" for d in stripped)
    assert [r for b in batches for r in b.records] == recs
    # Greedy: a batch closes only when the next record would not fit.
    for prev, nxt in itertools.pairwise(batches):
        assert len(prev.payload) + len(nxt.records[0].data) + 1 > limit
