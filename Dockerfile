# First version; the deployment issue makes it multi-stage and validates it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SWITCHBOARD_ENV=production
WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/base.txt \
    && useradd --create-home --uid 10001 switchboard
COPY . .
RUN SECRET_KEY=build API_KEY_HMAC_SECRET=build DATABASE_URL=sqlite:////tmp/build.db \
    REDIS_URL=redis://localhost python manage.py collectstatic --noinput
USER switchboard
EXPOSE 8000
CMD ["granian", "--interface", "asginl", "--host", "0.0.0.0", "--port", "8000", "switchboard.asgi:application"]
