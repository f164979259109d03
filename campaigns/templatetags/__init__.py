"""Template tags of the admin pages (campaign_admin)."""
