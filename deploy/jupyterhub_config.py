# JupyterHub on ONE machine (a lab server, up to ~30 students at once on 16 cores / 64 GB):
# system users, one single-user JupyterLab per student, limits by systemd.
#
#   apt-get install -y python3.11-venv nodejs npm bubblewrap && npm install -g configurable-http-proxy
#   python3.11 -m venv /opt/xaicourse && /opt/xaicourse/bin/pip install jupyterhub jupyterhub-systemdspawner \
#       -e /opt/xaicourse-src        # this repository (its dependencies: jupyterlab, nbgrader, torch, ...)
#   cp deploy/nbgrader_config.py /etc/jupyter/nbgrader_config.py
#   mkdir -p /srv/nbgrader/exchange && chmod 777 /srv/nbgrader/exchange
#   /opt/xaicourse/bin/jupyterhub -f deploy/jupyterhub_config.py
c = get_config()

c.JupyterHub.bind_url = "http://:8000"          # put it behind TLS (nginx/caddy) for a class
c.Authenticator.allowed_users = {f"student{i:02d}" for i in range(1, 31)} | {"instructor"}
c.Authenticator.admin_users = {"instructor"}
c.LocalAuthenticator.create_system_users = True  # or an OAuth/LDAP authenticator of your institution

# every student in their own systemd unit: memory, CPU and task limits the kernel enforces
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.mem_limit = "6G"
c.SystemdSpawner.cpu_limit = 2.0
c.SystemdSpawner.isolate_tmp = True
c.SystemdSpawner.isolate_devices = True
c.SystemdSpawner.disable_user_sudo = True
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "XAICOURSE_QUICK": "0",
}

# nbgrader's Assignments tab (fetch / submit / feedback) for everybody, formgrader for the instructor
c.JupyterHub.load_groups = {"formgrade-xaicourse": {"users": ["instructor"]},
                            "nbgrader-xaicourse": {"users": sorted(c.Authenticator.allowed_users)}}

# A GPU hub: the lectures' device toggle (auto / cpu / cuda) picks the GPU when the spawner gives
# one. With SystemdSpawner, allow the NVIDIA device nodes for the users that should have one:
#   c.SystemdSpawner.isolate_devices = False
#   c.SystemdSpawner.unit_extra_properties = {"DeviceAllow": "/dev/nvidia0 rw"}
# then `XAICOURSE_DEVICE=cuda` (environment) or the toggle selects it; without a GPU the toggle
# says so and stays on the CPU.
