"""Blind-vote tallies (Wilson intervals against published values), the votes log, saved conversations."""

from __future__ import annotations

import json
import math

import pytest

from distill_gui.chatlog import (
    Conversation,
    ConversationFileError,
    Reply,
    Turn,
    Vote,
    load_conversation,
    load_tallies,
    newest_registered,
    pair_key,
    read_votes,
    record_vote,
    remember_registered,
    save_conversation,
    tally,
    votes_path,
    wilson_interval,
)


@pytest.mark.parametrize("successes, trials, low, high", [
    # Newcombe (1998), Stat. Med. 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
])
def test_wilson_interval_matches_newcombe_1998(successes, trials, low, high):
    got_low, got_high = wilson_interval(successes, trials)
    assert got_low == pytest.approx(low, abs=5e-5) and got_high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("successes, trials", [(3, 7), (50, 100), (1, 1000)])
def test_wilson_bounds_are_the_roots_of_the_score_equation(successes, trials):
    """Each bound p solves (p_hat - p)^2 = z^2 p (1 - p) / n (Wilson 1927), checked in float64."""
    z = 1.959963984540054
    p_hat = successes / trials
    for p in wilson_interval(successes, trials):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / trials, rel=1e-9, abs=1e-15)


def test_no_votes_means_nothing_is_known():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_tallies_count_each_pair_whichever_side_each_model_sat_on():
    votes = [Vote("student:v1", "teacher:7b", "left"), Vote("teacher:7b", "student:v1", "right"),
             Vote("teacher:7b", "student", "left"), Vote("student:v1", "teacher:7b", "tie"),
             Vote("teacher:7b", "student:v1", "both_bad"), Vote("other", "teacher:7b", "left"),
             Vote("Student:V1", "teacher:7b", "right")]
    tallies = tally(votes)
    pair = tallies[pair_key("teacher:7b", "student:v1")]
    assert (pair.wins("student:v1"), pair.wins("teacher:7b"), pair.ties, pair.both_bad) == (2, 1, 1, 1)
    assert pair.win_rate("student:v1") == pytest.approx(2 / 3)
    assert pair.interval("student:v1") == wilson_interval(2, 3)
    assert tallies[pair_key("student", "teacher:7b")].wins("teacher:7b") == 1   # "student" is another model
    assert tallies[pair_key("other:latest", "teacher:7b")].wins("other") == 1    # x == x:latest
    summary = pair.summary("student:v1")
    low, high = wilson_interval(2, 3)
    assert f"wins 67 % of 3 decisive votes (95 % CI {100 * low:.0f}–{100 * high:.0f} %)" in summary


def test_votes_log_appends_and_skips_damaged_lines(tmp_path):
    path = tmp_path / "votes.jsonl"
    record_vote(Vote("a:1", "b:1", "left", prompt="Hi"), path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"left": "a:1", "right": "b:1", "vo')          # a write cut short by a crash
        handle.write("\n")
    record_vote(Vote("b:1", "a:1", "left"), path)
    votes = list(read_votes(path))
    assert [(v.left, v.right, v.vote) for v in votes] == [("a:1", "b:1", "left"), ("b:1", "a:1", "left")]
    assert votes[0].prompt == "Hi" and votes[0].time
    pair = load_tallies(path)[pair_key("a:1", "b:1")]
    assert pair.wins("a:1") == pair.wins("b:1") == 1


def test_votes_live_in_the_user_data_folder(_private_home):
    record_vote(Vote("a", "b", "tie"))
    assert votes_path().parent == _private_home
    assert json.loads(votes_path().read_text().strip())["vote"] == "tie"


def test_a_vote_must_be_one_of_the_four_choices():
    with pytest.raises(ValueError):
        Vote("a", "b", "draw")


def conversation() -> Conversation:
    conv = Conversation(models={"A": "teacher:7b", "B": "student:v1"},
                        settings={"A": {"system": "Be brief.", "options": {"temperature": 0.7}},
                                  "B": {"system": "Be brief.", "options": {"temperature": 0.7}}})
    conv.turns.append(Turn("What is 2+2?", {
        "A": Reply("teacher:7b", "It is **4**.", state="done", stats={"ttft_s": 0.25, "tokens_per_s": 40.0,
                                                                       "eval_count": 5, "done_reason": "stop"}),
        "B": Reply("student:v1", "", state="error", error="Model 'student:v1' is not installed")}))
    conv.turns.append(Turn("And 3+3?", {"A": Reply("teacher:7b", "6", state="done"),
                                        "B": Reply("student:v1", "Six", state="stopped")}))
    return conv


def test_each_pane_sends_its_own_history():
    conv = conversation()
    assert conv.messages_for("A", 1) == [{"role": "user", "content": "What is 2+2?"},
                                         {"role": "assistant", "content": "It is **4**."},
                                         {"role": "user", "content": "And 3+3?"}]
    # B's first reply failed before any text: the next user message follows the first one directly.
    assert conv.messages_for("B", 1) == [{"role": "user", "content": "What is 2+2?"},
                                         {"role": "user", "content": "And 3+3?"}]


def test_conversation_round_trips_through_jsonl(tmp_path):
    conv = conversation()
    conv.blind = {"vote": "left", "revealed": True}
    path = save_conversation(conv, tmp_path / "chat.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["type"] == "conversation" and len(lines) == 3
    back = load_conversation(path)
    assert back == conv
    assert not list(tmp_path.glob(".*partial"))


def test_markdown_transcript_reads_like_the_chat(tmp_path):
    path = save_conversation(conversation(), tmp_path / "chat.md")
    text = path.read_text(encoding="utf-8")
    assert "## 1. You\n\nWhat is 2+2?\n\n### A · teacher:7b\n\nIt is **4**.\n\n_TTFT 0.25 s · 40.0 tok/s · 5 tokens_" \
        in text
    assert "_failed: Model 'student:v1' is not installed_" in text and "_stopped by the user_" in text
    assert "## System prompt\n\nBe brief." in text
    with pytest.raises(ConversationFileError, match="markdown transcript"):
        load_conversation(path)


def test_blind_transcript_hides_models_until_revealed():
    conv = conversation()
    conv.blind = {"vote": None, "revealed": False}
    text = conv.to_markdown()
    assert "### Left\n" in text and "### Right\n" in text and "teacher:7b" not in text


@pytest.mark.parametrize("content, message", [
    ('{"type": "turn", "user": "hi"}\n', "line 1 should be its header"),
    ('{"type": "conversation"}\n{not json\n', "line 2: not valid JSON"),
    ("", "is empty"),
])
def test_bad_conversation_files_say_what_and_where(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConversationFileError, match=message) as info:
        load_conversation(path)
    assert str(path) in info.value.message and info.value.exit_code == 2


def test_newest_registered_student_among_installed_models(tmp_path):
    path = tmp_path / "registered.json"
    assert newest_registered(["a:1"], path) is None
    remember_registered("student:v1", "runs/x/final", path)
    remember_registered("student:v2", "runs/x/final", path)
    remember_registered("student:v1", "runs/x/final", path)          # registered again: newest now
    assert newest_registered(["student:v2", "Student:V1"], path) == "Student:V1"
    assert newest_registered(["student:v2"], path) == "student:v2"    # v1 was deleted from Ollama
    path.write_text("{broken", encoding="utf-8")
    assert newest_registered(["student:v2"], path) is None


def test_intervals_shrink_as_votes_accumulate():
    widths = [math.fsum((-lo, hi)) for lo, hi in (wilson_interval(6 * k, 10 * k) for k in (1, 4, 16))]
    assert widths[0] > widths[1] > widths[2]
