"""The ZIPs page shows the hours a contractor is rung, day by day with times and the time zone."""

from callersync.routing.v1 import routing_pb2 as rpb
from services.gateway.web.zips_pages import schedule_rows
from tests.web.conftest import check, sign_in
from tests.web.seed import claim, contractor_with_wallet


def test_overnight_hours_read_as_two_windows_and_a_day_without_hours_is_not_rung():
    rows = schedule_rows({"timeZone": "America/Chicago", "weeklyHours": [
        {"day": "WEEKDAY_FRIDAY", "startMinute": 1260, "endMinute": 1440},
        {"day": "WEEKDAY_SATURDAY", "endMinute": 360},
        {"day": "WEEKDAY_MONDAY", "startMinute": 780, "endMinute": 1020},
        {"day": "WEEKDAY_MONDAY", "startMinute": 480, "endMinute": 720},
    ]})
    assert rows[0] == ["Monday", "08:00–12:00, 13:00–17:00"]
    assert rows[4] == ["Friday", "21:00–24:00"]
    assert rows[5] == ["Saturday", "00:00–06:00"]
    assert rows[6] == ["Sunday", "Not rung"]


async def test_the_zips_page_shows_the_schedules_hours(stack, phone):
    cid, address = await contractor_with_wallet(stack)
    await claim(stack, cid, 4000)
    await stack.routing.SetSchedule(rpb.SetScheduleRequest(contractor_id=cid, time_zone="America/Denver", weekly_hours=[
        rpb.WeeklyHours(day=rpb.WEEKDAY_TUESDAY, start_minute=450, end_minute=1050),
        rpb.WeeklyHours(day=rpb.WEEKDAY_SATURDAY, start_minute=540, end_minute=780)]))
    await sign_in(phone, stack, address)
    await phone.goto(f"{stack.url}/app/c/{cid}/zips")
    hours = phone.get_by_role("region", name="Weekly hours (America/Denver)")
    assert "07:30–17:30" in await hours.get_by_role("row").filter(has_text="Tuesday").inner_text()
    assert "09:00–13:00" in await hours.get_by_role("row").filter(has_text="Saturday").inner_text()
    assert "Not rung" in await hours.get_by_role("row").filter(has_text="Wednesday").inner_text()
    assert "Times in America/Denver." in await phone.content()
    await check(phone, "zips-schedule")
