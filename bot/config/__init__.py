"""Settings by area, one pydantic-settings class each; bot.settings.Settings composes them by inheritance, so every
setting keeps its environment name and its flat attribute (`settings.fal_key`, `settings.quota_daily`)."""
