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
