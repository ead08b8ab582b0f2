"""Progress bars of long Spark steps."""

from activeclean_spark.progress import GROUP_PROPERTY, SparkProgress, progress_wanted


def test_progress_counts_tasks(spark, capsys):
    sc = spark.sparkContext
    sc.setLocalProperty(GROUP_PROPERTY, "user-group")
    with SparkProgress(sc, "counting", interval=0.05):
        assert sc.parallelize(range(100), 4).count() == 100
        assert sc.parallelize(range(10), 3).count() == 10
    error = capsys.readouterr().err
    assert "counting" in error
    # The bar follows the latest job: its 3 tasks, and the count of jobs.
    assert "3/3 tasks" in error
    assert "Spark job 2" in error
    # The user's job group is back in place for the jobs that follow.
    assert sc.getLocalProperty(GROUP_PROPERTY) == "user-group"
    sc.setLocalProperty(GROUP_PROPERTY, None)


def test_progress_disabled_prints_nothing(spark, capsys):
    sc = spark.sparkContext
    with SparkProgress(sc, "quiet", enabled=False):
        sc.parallelize(range(10), 2).count()
    assert capsys.readouterr().err == ""
    assert sc.getLocalProperty(GROUP_PROPERTY) is None


def test_progress_wanted_follows_setting():
    assert progress_wanted(True) is True
    assert progress_wanted(False) is False


def test_progress_without_jobs_shows_nothing(spark, capsys):
    with SparkProgress(spark.sparkContext, "driver only", interval=0.05):
        sum(range(1000))
    assert capsys.readouterr().err == ""


def test_progress_ignores_skipped_stages(spark, capsys):
    sc = spark.sparkContext
    totals = sc.parallelize(range(100), 4).map(lambda x: (x % 3, x)).reduceByKey(lambda a, b: a + b, 2)
    totals.count()  # writes the shuffle, so the next job skips its 4-task map stage
    capsys.readouterr()
    with SparkProgress(sc, "again", interval=0.05):
        assert totals.count() == 3
    error = capsys.readouterr().err
    assert "2/2 tasks" in error
    assert "/6 tasks" not in error
