"""The no-repeat n-gram rule (generator/no_repeat.py), on token ids."""

from __future__ import annotations

import pytest

from ragserve.generator.no_repeat import banned_next


@pytest.mark.parametrize(
    ("ids", "n", "banned"),
    [
        ([5, 6, 7, 5, 6], 3, {7}),  # "5 6" was followed by 7: 7 would repeat the trigram
        ([5, 6, 7, 5, 6, 9, 5, 6], 3, {7, 9}),
        ([5, 6, 7, 5], 2, {6}),
        ([5, 6, 7], 1, {5, 6, 7}),  # unigrams: nothing already said
        ([5, 6], 3, set()),  # too short to hold a trigram
        ([1, 2, 3, 4], 3, set()),  # the prefix "3 4" was never seen before
    ],
)
def test_banned_tokens_would_complete_an_n_gram_already_in_the_answer(ids, n, banned) -> None:
    assert banned_next(ids, n) == banned


def test_only_the_window_is_searched() -> None:
    ids = [5, 6, 7] + [1] * 10 + [5, 6]
    assert banned_next(ids, 3, window=20) == {7}
    assert banned_next(ids, 3, window=5) == set()
