"""A tenant's ServiceNow settings as a feature of their own: the stored rows (models), reading and saving them
(store), their audit trail (audit) and the rules that follow from them (values). Never logs a secret."""
