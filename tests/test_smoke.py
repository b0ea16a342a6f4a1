import pytest


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "storage": "ok"}


def test_login_as_patient(create_user, auth, client):
    user = create_user("patient")
    response = auth.login(user)
    assert response.status_code == 302
    assert "Hello" in client.get("/").get_data(as_text=True)


def test_login_with_totp(create_user, auth, client):
    user = create_user("radiologist")
    response = auth.login(user)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "signed in as a radiologist" in client.get("/").get_data(as_text=True)
