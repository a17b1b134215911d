# The hub of tests/test_hub.py: the shipped deploy/jupyterhub_config.py, with only what a test
# container lacks or must not take overridden (the test sets the environment variables):
#   * no systemd in a container: LocalProcessSpawner (one `jupyterhub-singleuser` process per user,
#     started as that Linux user) instead of SystemdSpawner;
#   * 127.0.0.1 and free ports instead of :8000 / 8081 / 8001 (other servers may run here);
#   * the hub's state (database, cookie secret, proxy pid) in a temporary folder.
# Authentication stays the shipped one: PAM against the real Linux users the test creates.
import os

load_subconfig(os.environ["XAICOURSE_HUB_SHIPPED_CONFIG"])  # noqa: F821 (deploy/jupyterhub_config.py)

c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ['XAICOURSE_HUB_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ['XAICOURSE_HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['XAICOURSE_HUB_PROXY_API_PORT']}"
state = os.environ["XAICOURSE_HUB_STATE"]
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = f"{state}/jupyterhub-proxy.pid"
c.Spawner.start_timeout = 180       # a loaded 2-core test machine
c.Spawner.http_timeout = 180
