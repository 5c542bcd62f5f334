"""What kassa's two web adapters (the API and the dashboard) share: code that speaks HTTP
but belongs to neither, so that neither has to import the other (import-linter forbids
the dashboard to import kassa.api). It sits above services and below the adapters: it may
import services and starlette, never storage, SQLAlchemy or an adapter."""
