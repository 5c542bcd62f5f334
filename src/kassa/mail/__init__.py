"""E-mail to the buyer: what a message says (`compose`) and how it reaches the SMTP server
(`smtp`). Pure of the database: the services (`services/emails.py`) read the order or the
document, call these, and keep the record of each message."""
