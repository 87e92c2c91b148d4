import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_int, env_list


def test_env_helpers_parse_and_default(monkeypatch):
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_bool("X_BOOL") is True
    assert env_bool("X_MISSING", True) is True
    assert env_int("X_INT", 1) == 42
    assert env_list("X_LIST") == ["a", "b", "c"]


@pytest.mark.parametrize(("helper", "value"), [(env_bool, "maybe"), (env_int, "ten")])
def test_env_helpers_refuse_bad_values_with_the_variable_name(monkeypatch, helper, value):
    monkeypatch.setenv("X_BAD", value)
    with pytest.raises(ImproperlyConfigured, match="X_BAD"):
        helper("X_BAD", 0) if helper is env_int else helper("X_BAD")


def test_the_demo_setup_creates_the_admin_and_loads_entities(db, capsys):
    from django.contrib.auth import authenticate, get_user_model
    from django.core.management import call_command

    from catalog.models import Entity

    call_command("demo_setup")
    out = capsys.readouterr().out
    password = out.strip().splitlines()[-1].split(" / ")[-1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert authenticate(username="admin", password=password) == admin
    assert Entity.objects.filter(kind="Component").count() >= 3
