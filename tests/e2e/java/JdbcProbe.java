// A JDBC login and one query, for the client matrix of tests/e2e/test_clients_java.py.
// Usage: java -cp DRIVER.jar:DIR JdbcProbe URL USER PASSWORD SQL
// Prints the first column of each row, one per line; a failed login prints its SQLState and message.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;

public class JdbcProbe {
    public static void main(String[] args) {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2]);
             ResultSet rows = conn.createStatement().executeQuery(args[3])) {
            while (rows.next()) {
                System.out.println(rows.getString(1));
            }
        } catch (SQLException e) {
            System.out.println("ERROR " + e.getSQLState() + " " + e.getErrorCode() + " " + e.getMessage());
            System.exit(1);
        }
    }
}
