"""Side-by-side chat records (Qt-free): conversations saved and reopened, blind votes and their tallies.

::

    from distill_gui.chatlog import Conversation, Vote, load_tallies, record_vote

    record_vote(Vote(left="student:v1", right="teacher:7b", vote="left", prompt="Hi"))
    for pair in load_tallies().values():
        print(pair.summary())
"""

from __future__ import annotations

from distill_gui.chatlog.conversation import (
                           PANES,
                           Conversation,
                           ConversationFileError,
                           Reply,
                           Turn,
                           conversations_dir,
                           load_conversation,
                           save_conversation,
)
from distill_gui.chatlog.registered import newest_registered, remember_registered
from distill_gui.chatlog.votes import (
                           VOTE_LABELS,
                           VOTES,
                           PairTally,
                           Vote,
                           canonical_model,
                           load_tallies,
                           pair_key,
                           read_votes,
                           record_vote,
                           tally,
                           votes_path,
                           wilson_interval,
)

__all__ = [
    "PANES",
    "VOTES",
    "VOTE_LABELS",
    "Conversation",
    "ConversationFileError",
    "PairTally",
    "Reply",
    "Turn",
    "Vote",
    "canonical_model",
    "conversations_dir",
    "load_conversation",
    "load_tallies",
    "newest_registered",
    "pair_key",
    "read_votes",
    "record_vote",
    "remember_registered",
    "save_conversation",
    "tally",
    "votes_path",
    "wilson_interval",
]
