"""The staff dashboard: server-rendered pages for people, on the services the API uses."""
