"""People: subscribers, lists, consent, suppression, tokens, import/export, webhooks."""
