# JupyterHub on ONE machine (a lab server, up to ~30 students at once on 16 cores / 64 GB):
# system users, one single-user JupyterLab per student, limits by systemd. The README's
# "Deployment for a real class" gives the set-up commands (tested by tests/test_hub.py).
#
# The hub's Python environment is shared by every user, so the course package is installed from
# a wheel (`pip install /path/to/clone`, NOT `-e`): the environment then holds the package only —
# never solutions/ or the hidden checks, which stay in the instructor's private clone.
c = get_config()

c.JupyterHub.bind_url = "http://:8000"          # put it behind TLS (nginx/caddy) for a class
c.Authenticator.allowed_users = {f"student{i:02d}" for i in range(1, 31)} | {"instructor"}
c.Authenticator.admin_users = {"instructor"}
c.LocalAuthenticator.create_system_users = False  # PAM: the users exist (useradd) and have passwords (chpasswd)
# or an OAuth/LDAP authenticator of your institution

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
    # the hub's environment (the `xaicourse` and `nbgrader` commands in every terminal)
    "PATH": "/opt/xaicourse/bin:/usr/local/bin:/usr/bin:/bin",
}
# JupyterLab starts its terminals as login shells under a spawner, and Debian's /etc/profile then
# resets PATH (no `xaicourse` in the terminal): start a plain interactive bash, which keeps it
c.Spawner.args = ['--ServerApp.terminado_settings={"shell_command": ["/bin/bash"]}']

# nbgrader's Assignments tab (fetch / submit / feedback) for everybody; formgrader and the
# "Create Assignment" panel are switched off for the whole environment and on again for the
# instructor alone (README "One machine": `jupyter labextension disable` and `unlock` at
# sys_prefix level, then, as the instructor, `--level=user` enable and the server extension on)
c.JupyterHub.load_groups = {"formgrade-xaicourse": {"users": ["instructor"]},
                            "nbgrader-xaicourse": {"users": sorted(c.Authenticator.allowed_users)}}

# A GPU hub: the lectures' device toggle (auto / cpu / cuda) picks the GPU when the spawner gives
# one. With SystemdSpawner, allow the NVIDIA device nodes for the users that should have one:
#   c.SystemdSpawner.isolate_devices = False
#   c.SystemdSpawner.unit_extra_properties = {"DeviceAllow": "/dev/nvidia0 rw"}
# then `XAICOURSE_DEVICE=cuda` (environment) or the toggle selects it; without a GPU the toggle
# says so and stays on the CPU.
