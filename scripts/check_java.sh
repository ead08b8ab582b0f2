#!/usr/bin/env bash
# Stop with a clear message unless Java 17 or newer is available, because
# pyspark 4 starts its JVM from JAVA_HOME or the java on the PATH.
set -u
java_bin=java
if [ -n "${JAVA_HOME:-}" ]; then
  java_bin="$JAVA_HOME/bin/java"
fi
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "error: Java not found (looked for '$java_bin'). activeclean_spark needs Java 17 or newer for Spark 4." >&2
  echo "Install it, for example: sudo apt-get install openjdk-17-jre-headless, then run make again." >&2
  exit 1
fi
version=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
major=${version%%.*}
if [ "$major" = "1" ]; then
  major=$(echo "$version" | cut -d. -f2)
fi
case "$major" in
  ''|*[!0-9]*)
    echo "error: cannot read the Java version from '$java_bin -version'; Spark 4 needs Java 17 or newer." >&2
    exit 1 ;;
esac
if [ "$major" -lt 17 ]; then
  echo "error: Java $version found at '$java_bin', but Spark 4 needs Java 17 or newer." >&2
  echo "Install OpenJDK 17 (for example: sudo apt-get install openjdk-17-jre-headless) and point JAVA_HOME at it." >&2
  exit 1
fi
