"""lmops operator: LanguageModel objects reconciled into Ray Serve on KubeRay."""
