"""CXoneConfig and the limiter presets: environment, checks, secrets, --rate/--burst."""

from __future__ import annotations

import pickle

import attrs
import pytest

import ratekit
import ratekit_cxone
from ratekit import Rate, TokenBucket
from ratekit.http import AdaptiveLimiter
from ratekit.testing import FakeClock
from ratekit_cxone import (
    DEFAULT_API_VERSION,
    DEFAULT_ISSUER,
    ConfigError,
    CXoneConfig,
    adaptive_limiter,
    make_limiter,
    tutorial_limiter,
)

# Made-up secrets, to look for in what is shown.
SECRET = "client-s3cret-value"  # noqa: S105
KEY_SECRET = "access-key-s3cret-value"  # noqa: S105

PLATFORM = {
    "CXONE_CLIENT_ID": "the-client",
    "CXONE_CLIENT_SECRET": SECRET,
    "CXONE_ACCESS_KEY_ID": "the-key",
    "CXONE_ACCESS_KEY_SECRET": KEY_SECRET,
}
PLATFORM_FIELDS = {
    "client_id": "a",
    "client_secret": "b",
    "access_key_id": "c",
    "access_key_secret": "d",
}
CLIENT = {"client_id": "a", "client_secret": "b"}
TUTORIAL = {
    "CXONE_TENANT_URL": "https://tenant.example.com/",
    "CXONE_CLIENT_ID": "the-client",
    "CXONE_CLIENT_SECRET": SECRET,
}


def test_the_public_names_are_exported():
    """Every name in __all__ exists, and __version__ is the installed one.

    (The order of __all__ is checked for every public module in test_packaging.py.)
    """
    for name in ratekit_cxone.__all__:
        assert hasattr(ratekit_cxone, name)
    assert ratekit_cxone.__version__ == ratekit.__version__
    with pytest.raises(AttributeError, match="nothing_here"):
        _ = ratekit_cxone.nothing_here


def test_from_env_platform_reads_every_variable_and_defaults_the_rest():
    """The platform's variables land in their fields; issuer and version have defaults."""
    config = CXoneConfig.from_env(environ=PLATFORM)
    assert config == CXoneConfig(
        client_id="the-client",
        client_secret=SECRET,
        access_key_id="the-key",
        access_key_secret=KEY_SECRET,
    )
    assert config.issuer == DEFAULT_ISSUER == "https://cxone.niceincontact.com"
    assert config.api_version == DEFAULT_API_VERSION == "34.0"
    assert config.tenant_id is None
    assert config.api_base is None
    full = CXoneConfig.from_env(
        "contacts",
        {
            **PLATFORM,
            "CXONE_ISSUER": "https://cxone-gov.niceincontact.com",
            "CXONE_TENANT_ID": "tenant-1",
            "CXONE_API_BASE": "https://api-na1.niceincontact.com",
            "CXONE_API_VERSION": " 26 ",
            "CXONE_TENANT_URL": "https://ignored.example.com",
        },
    )
    assert full.issuer == "https://cxone-gov.niceincontact.com"
    assert full.tenant_id == "tenant-1"
    assert full.api_base == "https://api-na1.niceincontact.com"
    assert full.api_version == "26"
    assert full.version == "26.0"
    assert full.tenant_url is None  # not a variable of this contract


def test_from_env_tutorial_reads_its_variables_and_splits_scopes():
    """The tutorial's variables; scopes split on spaces or commas; ic:read by default."""
    config = CXoneConfig.from_env("interactions", TUTORIAL)
    assert config.api == "interactions"
    assert config.tenant_url == "https://tenant.example.com/"
    assert config.scopes == ("ic:read",)
    assert config.access_key_id is None
    for text in ("ic:read analytics:read", "ic:read,analytics:read", " ic:read , analytics:read "):
        config = CXoneConfig.from_env("interactions", {**TUTORIAL, "CXONE_SCOPES": text})
        assert config.scopes == ("ic:read", "analytics:read")


@pytest.mark.parametrize(
    ("api", "environ", "missing"),
    [
        ("contacts", {}, sorted(PLATFORM)),
        ("contacts", {"CXONE_CLIENT_ID": "x"}, sorted(set(PLATFORM) - {"CXONE_CLIENT_ID"})),
        ("contacts", {**PLATFORM, "CXONE_ACCESS_KEY_SECRET": ""}, ["CXONE_ACCESS_KEY_SECRET"]),
        ("contacts", {**PLATFORM, "CXONE_CLIENT_ID": "  "}, ["CXONE_CLIENT_ID"]),
        ("interactions", {}, sorted(TUTORIAL)),
        ("interactions", {**TUTORIAL, "CXONE_TENANT_URL": ""}, ["CXONE_TENANT_URL"]),
    ],
)
def test_from_env_names_every_missing_variable_sorted(api, environ, missing):
    """Missing or empty required variables are all named, sorted, in one error."""
    with pytest.raises(ConfigError) as caught:
        CXoneConfig.from_env(api, environ)
    assert str(caught.value) == f"missing environment variables: {', '.join(missing)}"
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ratekit.RateKitError)


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch):
    """Without an environ argument, os.environ is read."""
    for name, value in PLATFORM.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CXONE_TENANT_ID", "")  # empty: unset
    assert CXoneConfig.from_env().access_key_secret == KEY_SECRET
    assert CXoneConfig.from_env().tenant_id is None


def test_from_env_names_invalid_values_by_variable():
    """Bad values are named by variable, together with the missing ones."""
    with pytest.raises(ConfigError) as caught:
        CXoneConfig.from_env(
            "contacts",
            {
                "CXONE_CLIENT_ID": "x",
                "CXONE_CLIENT_SECRET": "y",
                "CXONE_ACCESS_KEY_ID": "z",
                "CXONE_ISSUER": "http://cxone.example.com",
                "CXONE_API_VERSION": "v34",
            },
        )
    message = str(caught.value)
    assert message.startswith("missing environment variables: CXONE_ACCESS_KEY_SECRET; ")
    assert "CXONE_ISSUER must use https://" in message
    assert "CXONE_API_VERSION must be a version such as '34.0', got 'v34'" in message
    with pytest.raises(ConfigError, match="CXONE_TENANT_URL must be an https:// URL"):
        CXoneConfig.from_env("interactions", {**TUTORIAL, "CXONE_TENANT_URL": "tenant.example"})
    with pytest.raises(ConfigError, match="api must be one of"):
        CXoneConfig.from_env("reports", PLATFORM)  # type: ignore[arg-type]


def test_check_names_every_missing_or_invalid_field():
    """check() names fields (not variables), every one at fault, for the config's api."""
    CXoneConfig(**PLATFORM_FIELDS).check()
    with pytest.raises(ConfigError) as caught:
        CXoneConfig(client_id="a", api_base="ftp://x", tenant_id="").check()
    message = str(caught.value)
    assert "missing client_secret, access_key_id, access_key_secret for api='contacts'" in message
    assert "api_base must be an https:// URL, got 'ftp://x'" in message
    assert "tenant_id must not be empty" in message
    with pytest.raises(ConfigError) as caught:
        CXoneConfig(api="interactions", **CLIENT, scopes=["ic:read", "a b"]).check()
    assert "missing tenant_url for api='interactions'" in str(caught.value)
    assert "scopes must be names without spaces or commas, got 'a b'" in str(caught.value)
    # Loopback may be plain http (the simulator); query values are never shown.
    CXoneConfig(api="interactions", **CLIENT, tenant_url="http://127.0.0.1:1").check()
    with pytest.raises(ConfigError) as caught:
        CXoneConfig(api="interactions", **CLIENT, tenant_url="https://h/?key=hidden").check()
    assert "hidden" not in str(caught.value)
    with pytest.raises(ConfigError, match="api must be one of"):
        CXoneConfig(api="nope")  # type: ignore[arg-type]


def test_repr_and_errors_hide_the_secrets():
    """A repr shows *** for the client secret and the access key secret; errors never show them."""
    config = CXoneConfig.from_env(environ=PLATFORM)
    shown = repr(config)
    assert SECRET not in shown
    assert KEY_SECRET not in shown
    assert "client_secret='***'" in shown
    assert "access_key_secret='***'" in shown
    assert "client_id='the-client'" in shown
    assert "client_secret=None" in repr(CXoneConfig())
    with pytest.raises(ConfigError) as caught:
        attrs.evolve(config, issuer="http://example.com", client_id="").check()
    assert SECRET not in str(caught.value)
    assert KEY_SECRET not in str(caught.value)


def test_configs_are_frozen_values_and_errors_pickle():
    """Configs are immutable and comparable; ConfigError survives pickling."""
    config = CXoneConfig.from_env(environ=PLATFORM)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.client_id = "other"  # type: ignore[misc]
    assert attrs.evolve(config, tenant_id="t") != config
    error = pickle.loads(pickle.dumps(ConfigError("missing environment variables: CXONE_X")))  # noqa: S301
    assert isinstance(error, ConfigError)
    assert str(error) == "missing environment variables: CXONE_X"


# The limiter presets


def test_tutorial_limiter_is_a_bucket_of_100_refilled_at_one_and_a_half_per_second():
    """The tutorial's preset: 100 at once, then one every 2/3 s."""
    clock = FakeClock()
    bucket = tutorial_limiter(clock=clock)
    assert isinstance(bucket, TokenBucket)
    assert bucket.capacity == 100
    assert bucket.rate.per_second == 1.5
    assert all(bucket.try_acquire() for _ in range(100))
    assert bucket.try_acquire().retry_after == pytest.approx(2 / 3)


def test_adaptive_limiter_is_a_learning_limiter_within_bounds():
    """The default: an AdaptiveLimiter on the given clock, cut by 429s, never below its floor."""
    clock = FakeClock()
    limiter = adaptive_limiter(clock=clock)
    assert isinstance(limiter, AdaptiveLimiter)
    start = limiter.rate
    limiter.observe(200)
    assert limiter.rate > start
    for _ in range(100):
        clock.advance(1.0)
        limiter.observe(429)
    assert 0 < limiter.rate < start


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [
        ("50/second", 50.0),
        ("50/s", 50.0),
        ("3000/minute", 50.0),
        ("100/10s", 10.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        (4, 4.0),
        (Rate(1, per=2), 0.5),
    ],
)
def test_make_limiter_reads_rates(rate, per_second):
    """Text, bare numbers (per second) and Rates give an evenly spaced bucket, 2.5% below."""
    clock = FakeClock()
    bucket = make_limiter(rate, clock=clock)
    assert isinstance(bucket, TokenBucket)
    assert bucket.rate.per_second == pytest.approx(per_second * 0.975)
    assert bucket.capacity == 1
    assert make_limiter(rate, 3, clock=clock).capacity == 3  # type: ignore[attr-defined]


def test_make_limiter_without_a_rate_learns():
    """No rate: the adaptive default."""
    assert isinstance(make_limiter(), AdaptiveLimiter)


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        ("fast", None, "invalid rate 'fast'"),
        ("0/s", None, "invalid rate"),
        ("-3", None, "invalid rate"),
        ("", None, "invalid rate"),
        (True, None, "invalid rate"),
        ("5/s", 0, "burst must be a whole number"),
        ("5/s", 2.5, "burst must be a whole number"),
        ("5/s", True, "burst must be a whole number"),
        (None, 10, "burst needs a rate"),
    ],
)
def test_make_limiter_refuses_bad_input_by_name(rate, burst, match):
    """Bad --rate/--burst values raise ConfigError naming rate or burst."""
    with pytest.raises(ConfigError, match=match):
        make_limiter(rate, burst)


@pytest.mark.parametrize(
    "url", ["http://evil.example\\@127.0.0.1/", "http://127.0.0.1:8080@evil.example/"]
)
def test_a_url_that_parsers_read_apart_is_refused(url):
    """A tenant URL that only urllib.parse reads as loopback is refused, naming the variable."""
    with pytest.raises(ConfigError, match="CXONE_TENANT_URL"):
        CXoneConfig.from_env("interactions", {**TUTORIAL, "CXONE_TENANT_URL": url})
