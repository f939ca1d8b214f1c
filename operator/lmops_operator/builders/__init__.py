"""Pure builders of the Kubernetes objects a LanguageModel owns (plain dicts, ready for server-side apply)."""
