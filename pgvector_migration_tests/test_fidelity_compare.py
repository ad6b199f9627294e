"""The fidelity run's comparison of Open WebUI's `document_chunk` rows with ours
(fidelity/compare.py): what counts as a reproduced chunk, how rows of a repeated text are
paired, and when two searches agree."""

from fidelity.compare import Row, compare_collection, compare_tables, same_search_results


def row(text, file_id="f1", collection="kb", row_id=None, vector="[1,0]", **metadata):
    return Row(
        id=row_id or f"{file_id}-{text}-{metadata}",
        collection=collection,
        text=text,
        metadata={"file_id": file_id, **metadata},
        vector=vector,
    )


def test_a_chunk_is_a_text_of_a_file_counted_as_a_multiset():
    theirs = [row("a"), row("a"), row("b"), row("b", file_id="f2")]
    ours = [row("a"), row("b"), row("b"), row("c")]
    result = compare_collection("kb", theirs, ours)
    # one "a" is missing and f2's "b" is not f1's second "b"
    assert (result.theirs, result.ours, result.reproduced) == (4, 4, 2)
    assert result.share == 0.5


def test_rows_of_a_repeated_text_pair_by_position_and_report_differing_keys():
    theirs = [
        row("same", row=101, start_index=0),
        row("same", row=142, start_index=0),
        row("other", row=3, start_index=0, page_label="1"),
    ]
    ours = [
        row("same", row=142, start_index=0),
        row("same", row=101, start_index=0),
        row("other", row=3, start_index=0, collection_name="kb", vector="[0,1]"),
    ]
    result = compare_collection("kb", theirs, ours)
    assert result.share == 1.0
    assert result.differing_keys == {"collection_name": 1, "page_label": 1}
    assert result.examples["page_label"] == [["1", "<absent>"]]
    assert result.examples["collection_name"] == [["<absent>", "kb"]]
    assert result.vectors_equal == 2


def test_tables_are_compared_per_collection_including_ones_only_we_wrote():
    theirs = [row("a", collection="file-1")]
    ours = [row("a", collection="file-1"), row("x", collection="file-2")]
    results = {c.collection: c for c in compare_tables(theirs, ours)}
    assert results["file-1"].share == 1.0
    assert (results["file-2"].theirs, results["file-2"].ours, results["file-2"].share) == (0, 1, 0)


def test_searches_agree_up_to_the_order_of_equal_scores():
    hit = {"text": "a", "distance": 0.9, "file_id": "f", "start_index": 0}
    tie = {"text": "b", "distance": 0.9000001, "file_id": "f", "start_index": 5}
    lower = {"text": "c", "distance": 0.5, "file_id": "f", "start_index": 9}
    assert same_search_results([hit, tie, lower], [tie, hit, lower])
    assert not same_search_results([hit, tie, lower], [hit, tie])
    assert not same_search_results([hit, lower], [hit, {**lower, "start_index": 10}])
