"""Import every model so metadata and migrations see all tables."""

from __future__ import annotations


def import_all() -> None:
    from portal.audit import models as audit_models  # noqa: F401
    from portal.auth import models as auth_models  # noqa: F401
    from portal.cases import models as case_models  # noqa: F401
    from portal.deid import models as deid_models  # noqa: F401
    from portal.dimse import models as dimse_models  # noqa: F401
    from portal.links import models as link_models  # noqa: F401
    from portal.notifications import models as notification_models  # noqa: F401
    from portal.oncall import models as oncall_models  # noqa: F401
    from portal.reports import models as report_models  # noqa: F401
    from portal.shares import models as share_models  # noqa: F401
    from portal.studies import models as study_models  # noqa: F401
