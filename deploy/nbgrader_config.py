# nbgrader configuration for running xaicourse with a class on JupyterHub.
#
# Install it twice:
#   * system-wide for every user (students and graders): /etc/jupyter/nbgrader_config.py
#     (on Zero-to-JupyterHub it is baked into the image, see deploy/Dockerfile), so that the
#     Assignments tab knows the course and the exchange;
#   * in the instructor's course directory (the one holding source/, release/, submitted/ ...),
#     together with the part below the line, which `xaicourse classroom release` also writes.
c = get_config()

# --- everybody -----------------------------------------------------------------------------
c.CourseDirectory.course_id = "xaicourse"
# The exchange: a folder every user can reach. On one machine: a local folder (created by
# `nbgrader release_assignment`, mode 0o777 + sticky inbound). On Kubernetes: a shared RWX
# volume mounted at this path in every user pod (see deploy/z2jh-values.yaml).
c.Exchange.root = "/srv/nbgrader/exchange"
# Students see only their own submissions/feedback: the default exchange keys feedback by a
# per-submission secret; keep `Exchange.path_includes_course = False` for one course per hub.

# --- instructor / grader only (course directory) -------------------------------------------
c.CourseDirectory.root = "/home/instructor/xaicourse-course"
# Grading runs through `xaicourse classroom grade` (each submission isolated in bubblewrap or a
# container, several in parallel). The preprocessors are the package's own configuration, so the
# hub and the isolated runs cannot drift apart: the code stub, autograde's preprocessors with
# stderr shown as stdout, and feedback that shows each hidden test's result, never its code.
from xaicourse.autograding import NBGRADER_CONFIG

exec(NBGRADER_CONFIG)
c.ExecutePreprocessor.timeout = 120
