"""The security tests reuse the deployment fixtures: the same natively started gunicorn, Flower and
Debian nginx, and the compose files as `docker-compose config` renders them."""

from tests.deploy.conftest import (  # noqa: F401  (fixtures)
    dev_compose,
    docker_compose,
    flower_auth,
    flower_server,
    nginx_bin,
    nginx_dev,
    nginx_tls,
    ports,
    production_env,
    static_root,
    web_server,
)
from tests.sending.providers.conftest import sendgrid, sent_campaign  # noqa: F401  (fixtures)
from tests.deploy.test_compose import prod_compose  # noqa: F401  (fixture)
