"""Template tags of the admin pages: the campaign overview (campaign_admin), the forms' error summary
(error_summary)."""
