"""The staff dashboard (`/dashboard`): server-rendered pages for the people who run the
shop, on the same services as the API. `app.install_dashboard` mounts it."""
