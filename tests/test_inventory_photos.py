"""Product photos and names in the manager's inventory pages and the admin: an image is kept through Django's
storage (and listed by ``product_photos`` for the recogniser), anything else is refused with the reason; only
managers upload, see or delete them; names are editable; the products page is paged."""
from __future__ import annotations

import io

import pytest
from django.test import Client

from store.inventory import selectors
from store.inventory.models import Product, ProductPhoto
from store.inventory.services import InventoryInputError, photo_check, product_photo_add, product_photo_remove
from store.layout.models import Bin
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db


def image_bytes(fmt: str = "PNG", size=(64, 48), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return settings.MEDIA_ROOT


@pytest.fixture
def w():
    return make_world()


def client_for(user=None) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


def test_photo_check_accepts_images_and_names_why_others_are_refused():
    assert photo_check(image_bytes("PNG")) == ("png", 64, 48)
    assert photo_check(image_bytes("JPEG"))[0] == "jpg"
    cases = {
        b"": "empty",
        b"hello, I am a text file": "not an image",
        image_bytes("PNG")[:60]: "damaged or truncated",
        image_bytes("GIF"): "GIF images are not kept",
        image_bytes("PNG", size=(8, 8)): "8×8 px",
    }
    for data, why in cases.items():
        with pytest.raises(InventoryInputError, match=why):
            photo_check(data)


def test_photos_are_stored_listed_for_the_recogniser_and_removed(w, media):
    photo = product_photo_add(product=w.cola, data=image_bytes("JPEG"), by="mia")
    product_photo_add(product=w.cola, data=image_bytes("PNG", colour=(0, 0, 255)))
    paths = selectors.product_photos(w.cola)
    assert len(paths) == 2 and all(p.is_file() and media in p.parents for p in paths)
    assert paths[0].suffix == ".jpg" and paths[1].suffix == ".png"
    assert selectors.product_photo_gallery(store=w.store) == {w.cola.barcode: paths}
    with pytest.raises(InventoryInputError):
        product_photo_add(product=w.cola, data=b"<html>")
    assert ProductPhoto.objects.count() == 2
    from django.db import transaction  # noqa: F401  (the file goes once the row's deletion commits)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.db.transaction.on_commit", lambda fn, using=None, robust=False: fn())
        product_photo_remove(photo=photo)
    assert not paths[0].exists() and selectors.product_photos(w.cola) == [paths[1]]


def test_upload_page_keeps_images_and_refuses_others_with_the_reason(w):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = f"/manage/inventory/products/{w.cola.pk}/photos/"
    files = [SimpleUploadedFile("front.png", image_bytes("PNG"), "image/png"),
             SimpleUploadedFile("notes.png", b"not really a png", "image/png")]
    r = client_for(w.mia).post(url, {"photos": files})
    assert r.status_code == 200  # one kept: the page lists the refused one
    body = r.content.decode()
    assert "notes.png</strong> was not added: the file is not an image" in body
    assert w.cola.photos.count() == 1
    photo = w.cola.photos.get()
    got = client_for(w.mia).get(f"/manage/inventory/products/{w.cola.pk}/photos/{photo.pk}/")
    assert got.status_code == 200 and got["Content-Type"] == "image/png"
    assert got.content == image_bytes("PNG")
    r = client_for(w.mia).post(url, {"photos": [SimpleUploadedFile("x.jpg", b"\xff\xd8\xff garbage", "image/jpeg")]})
    assert r.status_code == 400 and w.cola.photos.count() == 1


def test_photos_are_for_managers_only(w):
    photo = product_photo_add(product=w.cola, data=image_bytes())
    get = f"/manage/inventory/products/{w.cola.pk}/photos/{photo.pk}/"
    posts = [f"/manage/inventory/products/{w.cola.pk}/photos/",
             f"/manage/inventory/products/{w.cola.pk}/photos/{photo.pk}/delete/"]
    assert client_for(None).get(get).status_code == 302
    assert client_for(w.ann).get(get).status_code == 403
    for url in posts:
        assert client_for(None).post(url).status_code == 302
        assert client_for(w.ann).post(url).status_code == 403
    assert ProductPhoto.objects.count() == 1
    # another product's id in the URL does not reach this photo
    assert client_for(w.mia).get(f"/manage/inventory/products/{w.water.pk}/photos/{photo.pk}/").status_code == 404


def test_name_is_editable_and_not_blank(w):
    url = f"/manage/inventory/products/{w.cola.pk}/"
    data = {"price": "1.99", "unit_weight_g": "350", "unit_weight_sd_g": "2", "low_stock_threshold": "0"}
    assert client_for(w.mia).post(url, {**data, "name": "  Cola   Zero "}).status_code == 302
    w.cola.refresh_from_db()
    assert w.cola.name == "Cola Zero"
    r = client_for(w.mia).post(url, {**data, "name": "   "})
    assert r.status_code == 400 and "give the product a name" in r.content.decode()
    w.cola.refresh_from_db()
    assert w.cola.name == "Cola Zero"


def test_products_page_is_paged(w):
    for i in range(60):
        Product.objects.create(store=w.store, barcode=f"9{i:05d}", name=f"Item {i:02d}", price="1.00",
                               unit_weight_g=100)
    r = client_for(w.mia).get("/manage/inventory/?store=s1")
    assert len(r.context["rows"]) == 50 and r.context["page"].paginator.num_pages == 2
    r2 = client_for(w.mia).get("/manage/inventory/?store=s1&page=2")
    assert len(r2.context["rows"]) == r2.context["total"] - 50
    assert 'rel="prev"' in r2.content.decode()
    r3 = client_for(w.mia).get("/manage/inventory/?store=s1&q=Item 0")
    assert r3.context["total"] == 10


def test_planogram_bins_in_natural_order(w):
    shelf = w.bin_a.shelf
    for n in (10, 2, 1):
        Bin.objects.create(shelf=shelf, store=w.store, number=100 + n, code=f"9-1-{n}", x=0, y=0, z=1,
                           width_m=.2, depth_m=.3)
    codes = [pb.bin.code for pb in selectors.planogram(store=w.store) if pb.bin.code.startswith("9-")]
    assert codes == ["9-1-1", "9-1-2", "9-1-10"]


def test_admin_checks_uploads_as_images(w):
    from django.core.files.uploadedfile import SimpleUploadedFile

    w.mia.is_superuser = True
    w.mia.save()
    c = client_for(w.mia)
    bad = c.post("/admin/inventory/productphoto/add/", {
        "product": w.cola.pk, "image": SimpleUploadedFile("x.png", b"plain text", "image/png")})
    assert bad.status_code == 200 and "the file is not an image" in bad.content.decode()
    ok = c.post("/admin/inventory/productphoto/add/", {
        "product": w.cola.pk, "image": SimpleUploadedFile("x.gif", image_bytes("PNG"), "image/gif")})
    assert ok.status_code == 302
    photo = ProductPhoto.objects.get()
    assert (photo.width, photo.height, photo.uploaded_by) == (64, 48, "mia")
    assert photo.image.name.endswith(".png")  # named by the decoded format, not the uploader's name
