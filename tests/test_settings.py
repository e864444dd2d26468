"""Settings: the public names and defaults, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def example_entries() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            entries[name.strip()] = value.strip()
    return entries


def test_env_example_lists_every_setting_with_its_default(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    entries = example_entries()
    assert set(entries) == {name.upper() for name in Settings.model_fields}
    # The example, read as an .env file, gives exactly the defaults.
    monkeypatch.chdir(tmp_path)
    for name in entries:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    assert load_settings() == Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("name,value", [
    ("PUBLIC_URL", "bot.example.org"), ("REQUEST_TIMEOUT", "-1"), ("CALLBACK_PORT", "70000"),
    ("BOT_OWNER_IDS", "telegram"), ("CACHE_TTL", "soon"), ("MAX_IN_FLIGHT_PER_CHAT", "0"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      name: str, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {name}:") and "\n" not in message


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    monkeypatch.setenv("DEFAULT_API_KEY", "sk_live_operatorkey_123456")
    settings = load_settings()
    assert "AAAAAAAA" not in repr(settings) and "operatorkey" not in repr(settings)
    assert settings.bot_owner_ids == frozenset()
