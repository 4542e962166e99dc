"""How tests/system/test_docs.py reads the docs: indented code blocks, expect comments, sample replies, and the
comparison of a sample reply with the real one."""

import json
import textwrap

from tests.system import doc_blocks


def page(tmp_path, text: str):
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text))
    return doc_blocks.blocks(path)


def test_indented_code_blocks_are_seen_and_list_continuations_are_not(tmp_path):
    found = page(tmp_path, """\
        Run it:

            callersync bench --quick
            callersync bench

        - a list item
          whose continuation is indented

        <!-- not-run: a benchmark -->

            python bench/wallet_charge.py
        """)
    assert [(b.line, b.indented, b.text, b.not_run) for b in found] == [
        (3, True, "callersync bench --quick\ncallersync bench", ""),
        (11, True, "python bench/wallet_charge.py", "a benchmark"),
    ]


def test_the_performance_pages_indented_commands_are_blocks():
    blocks = doc_blocks.blocks(doc_blocks.ROOT / "docs" / "performance.md")
    indented = [b.text.split()[0:2] for b in blocks if b.indented]
    assert ["callersync", "bench"] in indented and ["python", "bench/wallet_charge.py"] in indented


def test_expect_comments_and_a_sample_reply_belong_to_the_block_above(tmp_path):
    found = page(tmp_path, """\
        ```sh
        grpcurl list
        ```
        <!-- expect: WalletService -->

        <!-- expect-jq: .[0].ok -->

        ```json
        {"ok": true}
        ```

        Text, then a json block that is no reply:

        ```json
        {"config": 1}
        ```
        """)
    command = found[0]
    assert [(e.kind, e.what, e.line) for e in command.expects] == [
        ("text", "WalletService", 4), ("jq", ".[0].ok", 6), ("reply", '{"ok": true}', 8)]
    assert found[2].expects == []


def test_json_documents_skip_the_text_between_them():
    output = 'service list\n{\n  "a": 1\n}\nBillable: {not json}\n{"b": [2]}\n[3]\n'
    assert doc_blocks.json_documents(output) == [{"a": 1}, {"b": [2]}, [3]]


def test_a_sample_reply_matches_field_for_field_but_not_what_varies_per_run():
    sample = json.loads("""{"decision": {"chargeId": "55e62a17-efd1-5a3d-bec9-21d1e1c0293b", "walletEntryId": "5",
        "decidedAt": "2026-11-30T14:03:13.482113Z", "explanation": "Billable: ctr-7 pays ...",
        "legs": [{"rule": "FREE"}], "priceCents": "4500"}}""")
    actual = json.loads("""{"decision": {"chargeId": "0a5c7a3e-9f58-5b1e-8d0e-1f7b8c9d0e1f", "walletEntryId": "4",
        "decidedAt": "2026-12-02T07:30:04.333213691Z", "explanation": "Billable: ctr-7 pays $45.00.",
        "legs": [{"rule": "FREE"}], "priceCents": "4500"}}""")
    assert doc_blocks.reply_mismatches(sample, actual) == []


def test_a_sample_reply_that_leaves_out_invents_or_misstates_a_field_does_not_match():
    actual = {"decision": {"rateCents": "4500", "rateEffectiveFrom": "2026-01-01T00:00:00Z", "legs": [{}, {}]}}
    sample = {"decision": {"rateCents": "4000", "walletId": "5", "legs": [{}]}}
    assert sorted(doc_blocks.reply_mismatches(sample, actual)) == [
        ".decision.legs: 1 items in the sample, 2 in the reply",
        '.decision.rateCents: "4000" in the sample, "4500" in the reply',
        '.decision.rateEffectiveFrom: in the reply ("2026-01-01T00:00:00Z"), not in the sample',
        ".decision.walletId: in the sample, not in the reply",
    ]
    assert doc_blocks.reply_mismatches({"note": "Billable: ctr-7 ..."}, {"note": "Free: ctr-7"}) != []
