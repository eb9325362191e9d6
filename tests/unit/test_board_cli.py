"""`leadpulse board`: what a user can get wrong before it starts ends in one line."""

from __future__ import annotations

from leadpulse.cli.board import shown_database
from leadpulse.cli.main import main


def test_without_a_tokens_file_the_board_refuses_to_start_naming_the_setting(clean_env, capsys):
    assert main(["board"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("leadpulse board: LEADPULSE_API_TOKENS_FILE is not set") and error.count("\n") == 1


def test_a_database_url_of_another_kind_is_refused_naming_the_setting(clean_env, capsys):
    clean_env.setenv("LEADPULSE_BOARD_DATABASE", "mysql://board@db/board")
    assert main(["board"]) == 2
    error = capsys.readouterr().err
    expected = "LEADPULSE_BOARD_DATABASE: scheme 'mysql': a SQLite file path or a postgresql:// URL"
    assert error == f"leadpulse: bad setting: {expected}\n"


def test_a_postgresql_url_is_printed_without_its_password():
    shown = shown_database("postgresql://board:s3cret-pass@db.internal:5432/leadpulse")
    assert shown == "postgresql://board@db.internal:5432/leadpulse"
