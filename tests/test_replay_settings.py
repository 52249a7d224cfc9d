"""The settings of a replay: the recorded ones, then --config, then --set, validated by
load_settings with errors naming the key and where the value came from; nothing else
(no environment, no ./qwcontrol-config.properties) changes a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError
from schemas.settings import Settings, TakeoverPolicy
from workers.replay.settings import recorded_settings, replay_settings, setting_text

CM = "qwcontrol.clusterMode."
UUID = "00000001-0000-4000-8000-000000000000"


def test_recorded_settings_load_back_to_the_same_settings() -> None:
    s = Settings(
        heartbeat_interval_s=0.2,
        heartbeat_consider_inactive_s=0.6,
        heartbeat_consider_dead_s=1.2,
        autotakeover_enabled=True,
        autotakeover_policy=TakeoverPolicy.STATIC,
        autotakeover_allowed=(UUID,),
        recover_allowed=(UUID,),
    )
    text = recorded_settings(s)
    assert text[CM + "heartbeat.considerDead"] == "1.2"
    assert text[CM + "autotakeover.config.allowed"] == UUID
    assert text[CM + "recoverExecutions.config.allowed"] == UUID
    assert all(k.startswith(CM) for k in text)  # no URL, no token
    assert replay_settings(text).model_dump() == s.model_dump()


def test_setting_text_is_what_a_properties_file_holds() -> None:
    assert [setting_text(v) for v in (True, 0.5, 300.0, TakeoverPolicy.ANY, ("a", "b"))] == [
        "true",
        "0.5",
        "300.0",
        "any",
        "a,b",
    ]
    assert setting_text(()) is None and setting_text(None) is None


def test_set_overrides_the_recording_and_config_overrides_it_first(tmp_path: Path) -> None:
    base = recorded_settings(Settings())
    config = tmp_path / "what-if.properties"
    config.write_text(f"{CM}heartbeat.considerDead=400\n{CM}autotakeover.delay=5\nother.key=1\n")
    s = replay_settings(base, config=config, sets=[f"{CM}heartbeat.considerDead=600"])
    assert (s.heartbeat_consider_dead_s, s.autotakeover_delay_s) == (600, 5)
    assert s.heartbeat_consider_inactive_s == 150  # the recording's, untouched by the file
    alias = replay_settings(base, sets=[f"{CM}recoverExecutions.allowed={UUID}"])
    assert alias.recover_allowed == (UUID,)  # the alternative spelling of the key


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            f"{CM}heartbeat.considerDaed=600",
            f"--set: {CM}heartbeat.considerDaed = '600': unknown key: did you mean "
            f"`{CM}heartbeat.considerDead`?",
        ),
        (
            f"{CM}heartbeat.considerDead=soon",
            f"--set: {CM}heartbeat.considerDead = 'soon': a number of seconds from 0.01 to "
            "604800 (7 days)",
        ),
        (
            f"{CM}heartbeat.considerDead=100",
            f"--set: {CM}heartbeat.considerDead = '100': a number of seconds greater than "
            f"{CM}heartbeat.considerInactive = 150 (recording r.qwcrec)",
        ),
        ("considerDead", "--set: considerDead = (missing): KEY=VALUE"),
    ],
)
def test_a_bad_set_names_its_key_value_and_source(item: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        replay_settings(recorded_settings(Settings()), sets=[item], recording="r.qwcrec")
    assert expected in str(err.value)


def test_a_bad_config_file_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.properties"
    config.write_text(f"# what-if\n{CM}autotakeover.delay=-1\n")
    with pytest.raises(ConfigError, match=rf"{config}:2: {CM}autotakeover.delay = '-1'"):
        replay_settings(recorded_settings(Settings()), config=config)


def test_neither_the_environment_nor_the_working_directory_changes_a_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwcontrol-config.properties").write_text(f"{CM}heartbeat.considerDead=999\n")
    monkeypatch.setenv("QWC_CLUSTERMODE_HEARTBEAT_CONSIDERINACTIVE", "7")
    monkeypatch.setenv("QWC_CONFIG", str(tmp_path / "qwcontrol-config.properties"))
    s = replay_settings(recorded_settings(Settings()))
    assert (s.heartbeat_consider_inactive_s, s.heartbeat_consider_dead_s) == (150, 300)
