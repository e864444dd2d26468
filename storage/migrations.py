"""Numbered schema migrations. Append a new entry; never edit one that has shipped."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE chats (
            id TEXT PRIMARY KEY,              -- 'telegram:123', 'discord:456', 'discord:dm:7'
            platform TEXT NOT NULL,
            api_key_enc TEXT,                 -- Fernet token under SECRET_KEY
            key_hint TEXT,                    -- masked key, safe to show
            key_fingerprint TEXT,             -- HMAC of the key: groups chats sharing a key
            key_set_by TEXT,
            key_set_at REAL,
            daily_cap INTEGER,
            monthly_cap INTEGER,
            daily_warned_on TEXT,             -- '2026-11-29': the 80 % warning was given
            monthly_warned_on TEXT,           -- '2026-11'
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            chat_id TEXT NOT NULL REFERENCES chats(id),
            user_id TEXT NOT NULL,
            user_name TEXT,
            is_admin INTEGER NOT NULL DEFAULT 0,
            reply_enc TEXT,                   -- where to answer (Fernet: may hold tokens)
            username TEXT NOT NULL,
            state TEXT NOT NULL,
            token_hash TEXT UNIQUE,
            key_fingerprint TEXT,
            source_id INTEGER REFERENCES requests(id),
            status_ref TEXT,
            api_request_id TEXT,
            result_json TEXT,
            raw_body TEXT,
            error_kind TEXT,
            error_detail TEXT,
            credits_charged INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            deadline_at REAL NOT NULL,
            received_at REAL,
            finished_at REAL
        );
        CREATE INDEX requests_state ON requests(state, deadline_at);
        CREATE INDEX requests_chat ON requests(chat_id, created_at);
        CREATE INDEX requests_source ON requests(source_id);
        CREATE TABLE deliveries (
            request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            item_id TEXT NOT NULL,
            state TEXT NOT NULL,              -- 'sending' | 'sent'
            updated_at REAL NOT NULL,
            PRIMARY KEY (request_id, item_id)
        );
        CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            chat_id TEXT NOT NULL REFERENCES chats(id),
            request_id INTEGER REFERENCES requests(id),
            kind TEXT NOT NULL,               -- 'charge' | 'late' | 'shared' | 'refused' | 'caps'
            credits INTEGER NOT NULL DEFAULT 0, -- as reported by the API (creditsCharged)
            saved INTEGER NOT NULL DEFAULT 0,   -- credits a shared result avoided
            note TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX ledger_chat ON ledger(chat_id, created_at);
        """,
    ),
    (
        2,
        """
        ALTER TABLE requests ADD COLUMN command_id TEXT;
        CREATE UNIQUE INDEX requests_command ON requests(chat_id, command_id)
            WHERE command_id IS NOT NULL;
        """,
    ),
    (
        3,
        # Results (~36 KB for 23 stories) leave the requests table: every update of a request
        # (its state, its status message) rewrote them, and reading any column stored after
        # them walked their overflow pages. Delivery progress is keyed by (request, item)
        # alone: WITHOUT ROWID, one b-tree instead of a table and its unique index.
        """
        CREATE TABLE results (
            request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
            result_json TEXT,                 -- the normalised result (bot.codec)
            raw_body TEXT                     -- a body of unknown shape, kept for diagnosis
        );
        INSERT INTO results(request_id, result_json, raw_body)
            SELECT id, result_json, raw_body FROM requests
            WHERE result_json IS NOT NULL OR raw_body IS NOT NULL;
        ALTER TABLE requests DROP COLUMN result_json;
        ALTER TABLE requests DROP COLUMN raw_body;
        CREATE TABLE deliveries_v3 (
            request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            item_id TEXT NOT NULL,
            state TEXT NOT NULL,              -- 'sending' | 'sent'
            updated_at REAL NOT NULL,
            PRIMARY KEY (request_id, item_id)
        ) WITHOUT ROWID;
        INSERT INTO deliveries_v3 SELECT request_id, item_id, state, updated_at FROM deliveries;
        DROP TABLE deliveries;
        ALTER TABLE deliveries_v3 RENAME TO deliveries;
        """,
    ),
    (
        4,
        # Results are stored compressed (`bot.codec.pack`, a BLOB: 2.6 KB for 23 stories
        # instead of 36 KB of JSON text); rows written before stay JSON text, read as such.
        """
        ALTER TABLE results RENAME COLUMN result_json TO result;
        """,
    ),
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet applied, each in its own transaction. Returns the version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at REAL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, script in MIGRATIONS:
        if version in applied:
            continue
        # Scripts are constants of this module; `version` is an int from the same list.
        conn.executescript("BEGIN;\n" + script + f"""
            INSERT INTO schema_migrations(version, applied_at) VALUES ({int(version)}, unixepoch());
            COMMIT;""")  # noqa: S608
    return max((v for v, _ in MIGRATIONS), default=0)
