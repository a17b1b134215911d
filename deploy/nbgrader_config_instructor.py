# nbgrader configuration of the INSTRUCTOR only: install as ~/.jupyter/nbgrader_config.py of the
# instructor's account (it adds to /etc/jupyter/nbgrader_config.py). It tells formgrader and
# `xaicourse classroom …` (from any folder) where the course folder is.
#
# The course folder is private to the instructor (`xaicourse classroom` makes it mode 0700): it
# holds the released sources, the submissions, the gradebook and the grades. The hidden checks
# stay in your private clone of the course repository (`git clone … ~/xaicourse && chmod 700
# ~/xaicourse`), which `xaicourse classroom release` records in the course folder.
import os

c = get_config()
c.CourseDirectory.root = os.path.expanduser("~/xaicourse-course")
c.CourseDirectory.course_id = "xaicourse"
c.Exchange.root = "/srv/nbgrader/exchange"
