// A JDBC login, one query and optionally one prepared statement, for the client matrix of
// tests/e2e/test_clients_java.py (MariaDB Connector/J and pgjdbc).
// Usage: java -cp DRIVER.jar:DIR JdbcProbe URL USER PASSWORD SQL [PREPARED_SQL PARAM...]
// Prints the first column of each row, one per line; the prepared statement runs twice with the
// parameters (integers when they parse as such), its rows prefixed with "prepared ". A failed
// login prints its SQLState, error code and message.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;

public class JdbcProbe {
    public static void main(String[] args) {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            try (ResultSet rows = conn.createStatement().executeQuery(args[3])) {
                while (rows.next()) {
                    System.out.println(rows.getString(1));
                }
            }
            if (args.length > 4) {
                try (PreparedStatement statement = conn.prepareStatement(args[4])) {
                    for (int run = 0; run < 2; run++) {
                        for (int i = 5; i < args.length; i++) {
                            try {
                                statement.setInt(i - 4, Integer.parseInt(args[i]));
                            } catch (NumberFormatException e) {
                                statement.setString(i - 4, args[i]);
                            }
                        }
                        try (ResultSet rows = statement.executeQuery()) {
                            while (rows.next()) {
                                System.out.println("prepared " + rows.getString(1));
                            }
                        }
                    }
                }
            }
        } catch (SQLException e) {
            System.out.println("ERROR " + e.getSQLState() + " " + e.getErrorCode() + " " + e.getMessage());
            System.exit(1);
        }
    }
}
