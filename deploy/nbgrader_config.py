# nbgrader configuration for EVERY user of the hub (students and the instructor):
#   install as /etc/jupyter/nbgrader_config.py (on Zero-to-JupyterHub it is baked into the image,
#   see deploy/Dockerfile). It only names the course and the exchange, so that the Assignments tab
#   can fetch, submit and fetch feedback. It imports nothing: students' servers load it too.
# The instructor adds deploy/nbgrader_config_instructor.py as ~/.jupyter/nbgrader_config.py.
c = get_config()

c.CourseDirectory.course_id = "xaicourse"
# The exchange: a folder every user can reach. On one machine: a local folder (`mkdir -p -m 1777
# /srv/nbgrader/exchange`). On Kubernetes: a shared RWX volume mounted at this path in every user
# pod (see deploy/z2jh-values.yaml). Students see only their own submissions and feedback (nbgrader
# keys feedback by a per-submission secret).
c.Exchange.root = "/srv/nbgrader/exchange"
