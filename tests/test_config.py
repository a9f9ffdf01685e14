from __future__ import annotations

from pathlib import Path

import pytest

from voxlens import config


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    cfg = config.load(environ={})
    assert cfg.gateway.port == 50051
    assert cfg.models.stt == "whisper-tiny.en"
    assert cfg.gateway.big.kind == "openai"


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "voxlens.toml"
    path.write_text('[gateway]\nport = 6000\ntoken_sha256 = ["ab"]\n[gateway.big]\nbase_url = "http://127.0.0.1:9/v1"\n[vad]\nsilence_ms = 350\n')
    env = {"VOXLENS_GATEWAY__PORT": "7000", "VOXLENS_ROUTER__PRIVATE_KEYWORDS": "diary, salary", "VOXLENS_GATEWAY__BIG__MAX_TOKENS": "64"}
    cfg = config.load(path, environ=env)
    assert cfg.gateway.port == 7000
    assert cfg.gateway.token_sha256 == ("ab",)
    assert cfg.gateway.big.base_url == "http://127.0.0.1:9/v1"
    assert cfg.gateway.big.max_tokens == 64
    assert cfg.router.private_keywords == ("diary", "salary")
    assert cfg.vad.silence_ms == 350


def test_config_env_var_selects_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[device]\nfollow_up_s = 2.5\n")
    assert config.load(environ={"VOXLENS_CONFIG": str(path)}).device.follow_up_s == 2.5


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[gateway]\nprot = 1\n", "unknown key(s) ['prot']"),
        ("[gateway]\nport = 'abc'\n", "gateway.port: expected int"),
        ("[gateway\n", "not valid TOML"),
        ("[vad]\nthreshold = [1]\n", "vad.threshold: expected float"),
        ("[audio]\nblock_ms = 500\n", "[audio] block_ms = 500 is out of range; use 10-80"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path, environ={})
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", environ={})


def test_the_documented_example_is_a_valid_config(repo_root: Path) -> None:
    cfg = config.load(repo_root / "docs" / "voxlens.example.toml", environ={})
    assert cfg.gateway.big.api_key_env == "VOXLENS_BIG_API_KEY"


def test_time_zone_comes_from_the_system_and_no_location_is_invented(monkeypatch):
    from device.client import device_context
    from voxlens.config import DeviceConfig, system_time_zone

    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    assert system_time_zone() == "America/Sao_Paulo"
    cfg = DeviceConfig()
    ctx = device_context(cfg)
    assert ctx.time_zone == "America/Sao_Paulo" and not ctx.HasField("location")
    monkeypatch.setenv("TZ", "Not/AZone")
    assert system_time_zone() not in ("", "Not/AZone")  # a bad TZ falls back to the system's
    lisbon = DeviceConfig(place_name="Lisbon", latitude=38.72, longitude=-9.14, time_zone="Europe/Lisbon")
    ctx = device_context(lisbon)
    assert ctx.time_zone == "Europe/Lisbon" and ctx.location.place_name == "Lisbon"


def test_what_time_is_it_answers_in_the_system_time_zone(monkeypatch, tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from device.actions import DeviceActions
    from device.commands import load_grammar
    from device.platform import LocalPlatform
    from voxlens.config import DeviceConfig

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    platform = LocalPlatform(str(tmp_path))
    try:
        actions = DeviceActions.from_config(DeviceConfig(), platform=platform)
        command = load_grammar("en").understand("what time is it").command
        before = datetime.now(ZoneInfo("Asia/Tokyo"))
        spoken = actions.run(command).speech
        after = datetime.now(ZoneInfo("Asia/Tokyo"))
    finally:
        platform.close()
    hours = {f"{t:%-I}" for t in (before, after)}
    assert any(f" {h}:" in f" {spoken}" or f" {h} " in f" {spoken} " for h in hours), (spoken, hours)
