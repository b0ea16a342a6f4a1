"""On-call paging: radiologists' paging profiles, schedules, escalation and the pages themselves."""
