// pgjdbc through pg_doorman in transaction mode. prepareThreshold=1 makes every statement a
// named server-side statement from its first execution; batches, an error and recovery, with
// more threads (connections) than backends. Connection settings from PG* variables.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class DoormanJdbc {
    static final int THREADS = 8;

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT")
                + "/" + System.getenv("PGDATABASE") + "?prepareThreshold=1&sslmode=disable";
        String user = System.getenv("PGUSER");
        String password = System.getenv("PGPASSWORD");
        try (Connection c = DriverManager.getConnection(url, user, password)) {
            c.createStatement().execute("CREATE TABLE IF NOT EXISTS t_jdbc(v int)");
        }
        ExecutorService ex = Executors.newFixedThreadPool(THREADS);
        List<Future<?>> fs = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int n = t;
            fs.add(ex.submit(() -> {
                work(url, user, password, n);
                return null;
            }));
        }
        int failed = 0;
        for (Future<?> f : fs) {
            try {
                f.get();
            } catch (Exception e) {
                failed++;
                e.printStackTrace(System.out);
            }
        }
        ex.shutdown();
        System.out.println("pgjdbc suite: " + (THREADS - failed) + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException("check failed: " + what);
        }
    }

    static void work(String url, String user, String password, int n) throws Exception {
        try (Connection c = DriverManager.getConnection(url, user, password)) {
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + ?::int")) {
                for (int i = 0; i < 30; i++) {
                    ps.setInt(1, n);
                    ps.setInt(2, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getInt(1) == n + i, "sum");
                    }
                }
            }
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO t_jdbc(v) VALUES (?)")) {
                for (int round = 0; round < 3; round++) {
                    for (int i = 0; i < 50; i++) {
                        ins.setInt(1, n * 1000 + round * 100 + i);
                        ins.addBatch();
                    }
                    check(ins.executeBatch().length == 50, "batch");
                }
            }
            c.commit();
            c.setAutoCommit(true);
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM t_jdbc WHERE v / 1000 = ?")) {
                ps.setInt(1, n);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == 150, "count");
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?::int")) {
                ps.setInt(1, 0);
                try {
                    ps.executeQuery();
                    check(false, "no error");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
                }
                for (int i = 1; i < 5; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getInt(1) == 1 / i, "after error");
                    }
                }
            }
        }
    }
}
